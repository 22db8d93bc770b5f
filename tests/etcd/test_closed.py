"""Calls after ``close()`` are InvalidArgument ("closed"), not a retryable
BackendUnavailable (issue 12, item 4): the etcd store, and the leader of an election
(the conformance suite checks the backend's own calls)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.backends.etcd import EtcdStore
from fencing_coord.gate import FencedResource

from .conftest import EtcdTarget

pytestmark = pytest.mark.etcd


def _refused(calls: dict[str, Callable[[], Any]]) -> dict[str, str]:
    """What each call did, for those that did not raise InvalidArgument naming 'closed'."""
    wrong = {}
    for what, call in calls.items():
        try:
            call()
        except fc.InvalidArgument as exc:
            if "closed" not in str(exc):
                wrong[what] = repr(exc)
        except Exception as exc:  # collected: every call's outcome is reported at once
            wrong[what] = repr(exc)
        else:
            wrong[what] = "no exception"
    return wrong


def test_an_etcd_store_of_a_closed_backend_is_invalid_argument(etcd_single: EtcdTarget) -> None:
    backend = fc.connect(etcd_single.url, namespace=f"t-{uuid.uuid4().hex[:12]}", ttl=3)
    store = EtcdStore(backend)
    resource = FencedResource(store)
    assert resource.write("orders", "k", b"v", token=1).accepted
    election = backend.election("leader")
    backend.close()
    assert _refused({
        "fenced write": lambda: resource.write("orders", "k", b"w", token=2),
        "fenced read": lambda: resource.read("orders", "k", token=2),
        "plain read": lambda: resource.read("orders", "k"),
        "highest_token": lambda: resource.highest_token("orders"),
        "election.leader": lambda: election.leader(),
    }) == {}


def test_an_etcd_store_closed_with_its_own_connection_is_invalid_argument(etcd_single: EtcdTarget) -> None:
    store = EtcdStore(etcd_single.url, namespace=f"t-{uuid.uuid4().hex[:12]}")
    store.close()
    assert _refused({"fenced write": lambda: FencedResource(store).write("orders", "k", b"v", token=1)}) == {}
