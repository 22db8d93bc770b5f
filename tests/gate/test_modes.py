"""Gate modes (enforce, shadow, canary, off) and require_token, on every store."""

from __future__ import annotations

import pytest

from fencing_coord.errors import InvalidArgument, InvalidArgumentType, StaleTokenError
from fencing_coord.gate import FencedResource, GateMode, WriteResult
from fencing_coord.observability import (
    CRITICAL_WRITE_WITHOUT_TOKEN,
    FENCING_REJECT,
    GATE_DECISION,
    TOKEN_GAP,
    Metrics,
    RecordingSink,
)
from fencing_coord.rollout import canary_point
from fencing_coord.stores import MemoryStore, Store
from fencing_coord.stores.base import FencedOutcome


def gate(store: Store, **options: object) -> tuple[FencedResource, RecordingSink]:
    sink = RecordingSink()
    return FencedResource(store, metrics=Metrics(sink), **options), sink  # type: ignore[arg-type]


def test_enforce_is_the_default(store: Store) -> None:
    resource, sink = gate(store)
    assert resource.mode is GateMode.ENFORCE
    resource.write("orders", "k", b"9", token=9)
    assert resource.write("orders", "k", b"7", token=7) == WriteResult(False, 9, "stale token 7 < 9")
    assert sink.count(FENCING_REJECT, resource="orders") == 1
    assert sink.count(GATE_DECISION, resource="orders", mode="enforce", decision="refused") == 1
    assert sink.observations(TOKEN_GAP, resource="orders") == [-2]


def test_shadow_admits_a_stale_write_and_records_the_would_be_refusal(store: Store) -> None:
    resource, sink = gate(store, mode="shadow")
    assert resource.write("orders", "k", b"9", token=9) == WriteResult(True, None)
    late = resource.write("orders", "k", b"7", token=7)
    assert late == WriteResult(True, 9, None, shadow_refusal="stale token 7 < 9")
    late.raise_for_status()  # it was let through
    assert resource.read("orders", "k") == b"7"
    assert resource.highest_token("orders") == 9  # the stale token was not recorded
    assert sink.count(GATE_DECISION, mode="shadow", decision="would_refuse") == 1
    assert sink.count(GATE_DECISION, mode="shadow", decision="admitted") == 1
    assert sink.count(FENCING_REJECT) == 0  # nothing was refused
    assert sink.observations(TOKEN_GAP, resource="orders") == [-2]


def test_switching_shadow_to_enforce_refuses_the_next_stale_write(store: Store) -> None:
    resource, sink = gate(store, mode="shadow")
    resource.write("orders", "k", b"5", token=5)
    resource.write("orders", "k", b"8", token=8)  # shadow raised the highest token, as enforce would
    resource.write("orders", "k2", b"6", token=6)  # would be refused: stored, highest stays 8
    resource.mode = "enforce"
    assert resource.write("orders", "k", b"7", token=7) == WriteResult(False, 8, "stale token 7 < 8")
    assert resource.read("orders", "k") == b"8"
    assert resource.write("orders", "k", b"8b", token=8).accepted
    assert sink.count(FENCING_REJECT, resource="orders") == 1


def test_shadow_fenced_read_returns_the_value_and_enforce_refuses_it(store: Store) -> None:
    resource, sink = gate(store, mode="shadow")
    resource.write("orders", "k", b"v", token=9)
    assert resource.read("orders", "k", token=7) == b"v"
    assert resource.read("orders", "k", token=10) == b"v"
    assert resource.highest_token("orders") == 10  # an admitted fenced read raises it in shadow too
    assert sink.count(GATE_DECISION, mode="shadow", decision="would_refuse") == 1
    resource.mode = GateMode.ENFORCE
    with pytest.raises(StaleTokenError, match="stale token 9 < 10"):
        resource.read("orders", "k", token=9)
    assert sink.count(FENCING_REJECT) == 1


def test_canary_enforces_exactly_its_set(store: Store) -> None:
    resource, sink = gate(store, mode="canary", canary={"orders"})
    for name in ("orders", "payments", "audit"):
        resource.write(name, "k", b"9", token=9)
    results = {name: resource.write(name, "k", b"7", token=7) for name in ("orders", "payments", "audit")}
    assert results["orders"] == WriteResult(False, 9, "stale token 7 < 9")
    assert results["payments"] == results["audit"] == WriteResult(True, 9, None, "stale token 7 < 9")
    assert [resource.read(name, "k") for name in ("orders", "payments", "audit")] == [b"9", b"7", b"7"]
    assert sink.count(FENCING_REJECT) == sink.count(FENCING_REJECT, resource="orders") == 1
    assert sink.count(GATE_DECISION, mode="canary", decision="would_refuse") == 2
    assert [resource.enforces(n) for n in ("orders", "payments")] == [True, False]


def test_canary_fraction_is_chosen_by_name_and_only_grows(store: Store) -> None:
    names = [f"shard-{i}" for i in range(40)]
    resource, _ = gate(store, mode="canary", canary_fraction=0.25)
    chosen = {name for name in names if canary_point(name) < 0.25}
    assert 3 <= len(chosen) <= 20  # about a quarter (exactly the same set on every run and host)
    for name in names:
        resource.write(name, "k", b"9", token=9)
    refused = {name for name in names if not resource.write(name, "k", b"7", token=7).accepted}
    assert refused == chosen
    resource.set_mode("canary", canary_fraction=0.5)
    assert chosen <= {name for name in names if resource.enforces(name)}


def test_canary_point_is_stable() -> None:
    # Pinned: a canary must pick the same resources in every process, version and host.
    assert canary_point("orders") == pytest.approx(0.8346698229, abs=1e-9)
    assert 0.0 <= canary_point("") < 1.0


def test_off_checks_and_records_nothing(store: Store) -> None:
    resource, sink = gate(store)
    resource.write("orders", "k", b"9", token=9)
    resource.mode = "off"
    assert resource.write("orders", "k", b"7", token=7) == WriteResult(True, None)
    assert resource.read("orders", "k", token=3) == b"7"
    assert resource.highest_token("orders") == 9
    assert sink.count(GATE_DECISION, mode="off", decision="unchecked") == 2
    assert sink.count(FENCING_REJECT) == 0


def test_writes_without_a_token_are_counted_and_refused_only_when_required(store: Store) -> None:
    resource, sink = gate(store)
    assert resource.write_without_token("orders", "k", b"legacy") == WriteResult(True, None)
    assert resource.read("orders", "k") == b"legacy"
    assert resource.highest_token("orders") is None

    strict, strict_sink = gate(store, require_token=True)
    refused = strict.write_without_token("orders", "k", b"unsafe")
    assert refused == WriteResult(False, None, "no token: resource 'orders' requires one (require_token=True)")
    with pytest.raises(StaleTokenError, match="no token"):
        refused.raise_for_status()
    assert strict.read("orders", "k") == b"legacy"

    strict.mode = "shadow"
    shadowed = strict.write_without_token("orders", "k", b"previewed")
    assert shadowed.accepted
    assert shadowed.shadow_refusal is not None
    assert strict.read("orders", "k") == b"previewed"

    assert sink.count(CRITICAL_WRITE_WITHOUT_TOKEN, resource="orders") == 1
    assert sink.count(GATE_DECISION, mode="enforce", decision="no_token") == 1
    assert strict_sink.count(CRITICAL_WRITE_WITHOUT_TOKEN, resource="orders") == 2
    assert strict_sink.count(GATE_DECISION, mode="enforce", decision="refused") == 1
    assert strict_sink.count(GATE_DECISION, mode="shadow", decision="would_refuse") == 1
    assert strict_sink.count(FENCING_REJECT) == 0  # not a stale token


def test_a_token_none_is_still_a_type_error(store: Store) -> None:
    resource, _ = gate(store, require_token=True)
    with pytest.raises(InvalidArgumentType, match="token must be an int, not NoneType"):
        resource.write("orders", "k", b"v", token=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"mode": "audit"}, InvalidArgument, "unknown gate mode 'audit'; choose one of enforce, shadow, canary, off"),
    ({"mode": 1}, InvalidArgumentType, "mode must be a str"),
    ({"mode": "canary"}, InvalidArgument, "canary mode needs canary resource names or a canary_fraction"),
    ({"mode": "canary", "canary_fraction": 1.5}, InvalidArgument, "between 0 and 1"),
    ({"mode": "canary", "canary": "orders"}, InvalidArgumentType, "collection of resource names"),
    ({"mode": "canary", "canary": [""]}, InvalidArgument, "canary resource name"),
    ({"canary": ["orders"]}, InvalidArgument, "canary mode only, not enforce"),
    ({"require_token": 1}, InvalidArgumentType, "require_token must be a bool"),
    ({"metrics": RecordingSink()}, InvalidArgumentType, "metrics must be"),
])
def test_bad_gate_options(options: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        FencedResource(MemoryStore(), **options)  # type: ignore[arg-type]


class ComposedStore(Store):
    """A store that inherits Store.gated_write (the base class's composition)."""

    def __init__(self) -> None:
        self.inner = MemoryStore()

    def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        return self.inner.fenced_write(resource, key, value, token, strict)

    def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        return self.inner.fenced_read(resource, key, token, strict)

    def plain_write(self, resource: str, key: str, value: bytes) -> None:
        self.inner.plain_write(resource, key, value)

    def plain_read(self, resource: str, key: str) -> bytes | None:
        return self.inner.plain_read(resource, key)

    def highest_token(self, resource: str) -> int | None:
        return self.inner.highest_token(resource)


@pytest.mark.parametrize("store", [ComposedStore()], ids=["base-class gated_write"])
def test_shadow_through_the_base_class_composition(store: Store) -> None:
    test_switching_shadow_to_enforce_refuses_the_next_stale_write(store)


def test_shadow_store_call_contract(store: Store) -> None:
    """gated_write(shadow=True): admitted raises the highest token; stale stores the value
    and leaves the highest token alone; enforce (shadow=False) is fenced_write."""
    assert store.gated_write("r", "k", b"5", 5, False, shadow=True) == FencedOutcome(True, None)
    assert store.gated_write("r", "k", b"3", 3, False, shadow=True) == FencedOutcome(False, 5)
    assert (store.plain_read("r", "k"), store.highest_token("r")) == (b"3", 5)
    assert store.gated_write("r", "k", b"5b", 5, True, shadow=True) == FencedOutcome(False, 5)  # strict
    assert store.gated_write("r", "k", b"5c", 5, False, shadow=True) == FencedOutcome(True, 5)
    assert store.gated_write("r", "k", b"6", 6, False, shadow=True) == FencedOutcome(True, 5)
    assert store.gated_write("r", "k", b"4", 4, False) == FencedOutcome(False, 6)
    assert (store.plain_read("r", "k"), store.highest_token("r")) == (b"6", 6)
