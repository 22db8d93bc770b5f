"""Plain-text tables for the commands' human output."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["table"]


def table(rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """``rows`` (the first one the header) as left-aligned columns two spaces apart, each
    line starting with ``indent``, without trailing spaces."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join(indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n"
                   for row in rows)
