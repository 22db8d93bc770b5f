"""``resource.bind(grant)``: the grant's token and name are filled into every call."""

from __future__ import annotations

import uuid

import pytest

import fencing_coord.config as fc_config
from fencing_coord.bound import BoundResource, fence_of
from fencing_coord.errors import InvalidArgument, InvalidArgumentType, StaleTokenError
from fencing_coord.gate import FencedResource, UnfencedResource, WriteResult
from fencing_coord.stores import Store
from fencing_coord.testing import FakeClock


def test_bound_handle_of_a_paused_holder_is_refused(store: Store) -> None:
    clock = FakeClock(0.0)
    resource = FencedResource(store)
    table = f"memory://bind-{uuid.uuid4().hex[:8]}"
    with fc_config.connect(table, clock=clock, ttl=10) as a, fc_config.connect(table, clock=clock, ttl=10) as b:
        mine = resource.bind(a.acquire("orders", timeout=0))
        assert (mine.name, mine.token) == ("orders", 1)
        assert mine.write("total", b"1") == WriteResult(True, None)
        assert mine.read("total") == b"1"

        clock.advance(10)  # paused past the lease
        theirs = resource.bind(b.acquire("orders", timeout=0))
        assert theirs.read("total") == b"1"
        assert theirs.write("total", b"2").accepted

        assert mine.write("total", b"late") == WriteResult(False, 2, "stale token 1 < 2")
        with pytest.raises(StaleTokenError, match="stale token 1 < 2"):
            mine.read("total")
        assert mine.plain_read("total") == b"2"
        assert mine.highest_token() == 2


def test_bind_to_another_resource_name_and_to_an_election_term(store: Store) -> None:
    resource = FencedResource(store)
    with fc_config.connect(f"memory://bind-{uuid.uuid4().hex[:8]}") as backend:
        with backend.lock("orders-lock", timeout=0) as grant:
            bound = resource.bind(grant, "orders")
            assert isinstance(bound, BoundResource)
            bound.write("k", b"v").raise_for_status()
            assert resource.highest_token("orders") == grant.token
            assert resource.highest_token("orders-lock") is None
        with backend.election("scheduler").campaign(timeout=0) as term:
            assert fence_of(term) == (term.token, "scheduler")
            assert resource.bind(term).write("last-run", b"x").accepted
            assert resource.highest_token("scheduler") == term.token


def test_bind_refuses_what_is_not_a_grant(store: Store) -> None:
    resource = FencedResource(store)
    with pytest.raises(InvalidArgumentType, match="expected a Grant or a Term, not int"):
        resource.bind(7)  # type: ignore[arg-type]
    with fc_config.connect(f"memory://bind-{uuid.uuid4().hex[:8]}") as backend:
        grant = backend.acquire("orders", timeout=0)
        with pytest.raises(InvalidArgument, match="resource name 'a/b' contains '/'"):
            resource.bind(grant, "a/b")


def test_unfenced_bind_accepts_everything(store: Store) -> None:
    with fc_config.connect(f"memory://bind-{uuid.uuid4().hex[:8]}") as backend:
        grant = backend.acquire("orders", timeout=0)
        bound = UnfencedResource(store).bind(grant)
        assert bound.write("k", b"v") == WriteResult(True, None)
        assert bound.highest_token() is None
