"""The async gate has the blocking gate's modes (enforce, shadow, canary, off),
require_token, metrics, audit records and bind: the same operations give the same
results, counts and records through both front ends."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord import audit
from fencing_coord.aio.gate import AsyncBoundResource, AsyncFencedResource
from fencing_coord.aio.stores import AsyncMemoryStore
from fencing_coord.errors import StaleTokenError
from fencing_coord.gate import FencedResource, GateMode, WriteResult
from fencing_coord.observability import (
    CRITICAL_WRITE_WITHOUT_TOKEN,
    FENCING_REJECT,
    GATE_DECISION,
    Metrics,
    RecordingSink,
)
from fencing_coord.stores import MemoryStore
from fencing_coord.testing.aio_fixtures import run_guarded

FIELDS = ("resource", "key", "token", "highest", "decision", "mode", "holder", "operation")

#: One rollout scenario: (operation, arguments); "mode" switches the gate's mode.
SCENARIO: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("write", ("orders", "k", b"9"), {"token": 9, "holder": "w1"}),
    ("write", ("orders", "k", b"7"), {"token": 7}),
    ("read", ("orders", "k"), {"token": 9, "holder": "w1"}),
    ("read", ("orders", "k"), {"token": 3}),
    ("write_without_token", ("orders", "k2", b"legacy"), {}),
    ("mode", ("shadow",), {}),
    ("write", ("orders", "k", b"8"), {"token": 8, "holder": "w0"}),
    ("read", ("orders", "k"), {"token": 2}),
    ("write_without_token", ("orders", "k3", b"legacy"), {}),
    ("mode", ("canary",), {"canary": ["payments"]}),
    ("write", ("payments", "k", b"5"), {"token": 5}),
    ("write", ("payments", "k", b"4"), {"token": 4}),
    ("write", ("orders", "k", b"1"), {"token": 1}),
    ("write_without_token", ("payments", "k4", b"legacy"), {}),
    ("mode", ("off",), {}),
    ("write", ("orders", "k", b"0"), {"token": 0}),
    ("read", ("orders", "k"), {"token": 0}),
    ("write_without_token", ("orders", "k5", b"legacy"), {}),
    ("mode", ("enforce",), {}),
    ("write", ("orders", "k", b"6"), {"token": 6}),
    ("read", ("orders", "k"), {}),
]


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except StaleTokenError as exc:
        return ("StaleTokenError", str(exc))


async def _aoutcome(call: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await call()
    except StaleTokenError as exc:
        return ("StaleTokenError", str(exc))


def _blocking_run(require_token: bool) -> tuple[list[Any], RecordingSink]:
    sink = RecordingSink()
    resource = FencedResource(MemoryStore(), metrics=Metrics(sink), require_token=require_token)
    results = []
    for op, args, kwargs in SCENARIO:
        if op == "mode":
            resource.set_mode(*args, **kwargs)
            continue
        method = getattr(resource, op)
        results.append(_outcome(lambda m=method, a=args, k=kwargs: m(*a, **k)))  # type: ignore[misc]
    return results, sink


def _async_run(require_token: bool) -> tuple[list[Any], RecordingSink]:
    sink = RecordingSink()
    results: list[Any] = []

    async def main() -> None:
        results.clear()
        sink.__init__()  # type: ignore[misc]  # a fresh record per guarded run
        resource = AsyncFencedResource(AsyncMemoryStore(), metrics=Metrics(sink), require_token=require_token)
        for op, args, kwargs in SCENARIO:
            if op == "mode":
                resource.set_mode(*args, **kwargs)
                continue
            method = getattr(resource, op)
            results.append(await _aoutcome(lambda m=method, a=args, k=kwargs: m(*a, **k)))  # type: ignore[misc]

    run_guarded(main)
    return results, sink


@pytest.mark.parametrize("require_token", [False, True])
def test_every_mode_decides_counts_and_answers_as_the_blocking_gate(require_token: bool) -> None:
    expected, blocking_sink = _blocking_run(require_token)
    got, async_sink = _async_run(require_token)
    assert got == expected
    for decision in ("admitted", "refused", "would_refuse", "unchecked", "no_token"):
        for mode in GateMode:
            assert async_sink.count(GATE_DECISION, mode=mode.value, decision=decision) == \
                blocking_sink.count(GATE_DECISION, mode=mode.value, decision=decision), (mode, decision)
    assert async_sink.count(FENCING_REJECT) == blocking_sink.count(FENCING_REJECT) > 0
    assert async_sink.count(CRITICAL_WRITE_WITHOUT_TOKEN) == blocking_sink.count(CRITICAL_WRITE_WITHOUT_TOKEN) == 4


def test_shadow_lets_a_stale_write_through_and_keeps_the_highest_token() -> None:
    async def main() -> None:
        sink = RecordingSink()
        resource = AsyncFencedResource(AsyncMemoryStore(), mode="shadow", metrics=Metrics(sink))
        assert resource.mode is GateMode.SHADOW
        await resource.write("orders", "k", b"9", token=9)
        late = await resource.write("orders", "k", b"7", token=7)
        assert late == WriteResult(True, 9, None, shadow_refusal="stale token 7 < 9")
        assert await resource.read("orders", "k") == b"7"
        assert await resource.highest_token("orders") == 9
        assert sink.count(GATE_DECISION, mode="shadow", decision="would_refuse") == 1
        resource.mode = "enforce"
        assert not (await resource.write("orders", "k", b"8", token=8)).accepted

    run_guarded(main)


def test_require_token_refuses_a_tokenless_write_where_enforced() -> None:
    async def main() -> None:
        store = AsyncMemoryStore()
        resource = AsyncFencedResource(store, require_token=True)
        refused = await resource.write_without_token("orders", "k", b"v")
        assert not refused.accepted
        assert "requires one" in (refused.reason or "")
        assert await store.plain_read("orders", "k") is None
        assert (await AsyncFencedResource(store).write_without_token("orders", "k", b"v")).accepted

    run_guarded(main)


def test_each_decision_is_one_audit_record_as_the_blocking_gate_s(caplog: pytest.LogCaptureFixture) -> None:
    operations: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("write", ("orders", "k", b"9"), {"token": 9, "holder": "worker-1"}),
        ("write", ("orders", "k", b"7"), {"token": 7}),
        ("read", ("orders", "k"), {"token": 9, "holder": "worker-1"}),
        ("write_without_token", ("orders", "k2", b"legacy"), {}),
    ]

    def records() -> list[dict[str, object]]:
        assert audit.flush(30.0)
        found = [{f: getattr(r, f) for f in FIELDS} for r in caplog.records if r.name == "fencing_coord.audit"]
        caplog.clear()
        return found

    async def main() -> None:
        caplog.clear()
        resource = AsyncFencedResource(AsyncMemoryStore())
        for op, args, kwargs in operations:
            await getattr(resource, op)(*args, **kwargs)

    with caplog.at_level(logging.DEBUG, logger="fencing_coord.audit"):  # DEBUG: admitted decisions too
        blocking = FencedResource(MemoryStore())
        for op, args, kwargs in operations:
            getattr(blocking, op)(*args, **kwargs)
        expected = records()
        run_guarded(main)
        got = records()
    assert len(expected) == len(operations)
    assert [r["decision"] for r in expected] == ["admitted", "refused", "admitted", "no_token"]
    assert got == expected


def test_bind_fills_in_a_grant_s_or_a_term_s_token() -> None:
    async def main() -> None:
        resource = AsyncFencedResource(AsyncMemoryStore())
        async with await fc.aio.connect(f"memory://bind-{uuid.uuid4().hex[:8]}") as backend:
            async with backend.lock("orders", timeout=0) as grant:
                bound = resource.bind(grant)
                assert isinstance(bound, AsyncBoundResource)
                assert (await bound.write("k", b"v")).accepted
                assert await bound.read("k") == b"v"
                assert await bound.highest_token() == grant.token
            async with await backend.election("scheduler").campaign(timeout=0) as term:
                assert (await resource.bind(term, "jobs").write("last-run", b"x")).accepted
                assert await resource.highest_token("jobs") == term.token
            with pytest.raises(fc.InvalidArgumentType):
                resource.bind(object())  # type: ignore[arg-type]

    run_guarded(main)
