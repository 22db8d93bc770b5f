"""Stores behind :class:`~fencing_coord.FencedResource` (issue 3 fills this in)."""

from __future__ import annotations

from .base import FencedOutcome, Store, admits

__all__ = ["FencedOutcome", "Store", "admits"]
