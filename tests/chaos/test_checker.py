"""The campaign's history checker finds each kind of violation in a history made to have
it, and none in a clean one (so a clean campaign report means something)."""

from __future__ import annotations

from typing import Any

from fencing_coord.testing.chaos_check import check

Record = dict[str, Any]


class History:
    """Builds worker records the way chaos_worker writes them, on a fake clock."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.now = 0.0

    def add(self, ev: str, **fields: Any) -> None:
        self.now += 1.0
        self.records.append({"ev": ev, "w": "w1g1", "t": self.now, **fields})

    def grant(self, op: str, token: int, lock: str = "s-c0") -> None:
        self.add("acquire", op=op, lock=lock)
        self.add("acquired", op=op, lock=lock, token=token)

    def call(self, op: str, token: int, kind: str, key: str, n: int | None, outcome: str = "ok") -> None:
        where = {"op": op, "store": "s", "resource": "c0", "token": token}
        self.add("invoke", call=kind, key=key, n=n, **where)
        if outcome != "none":
            self.add(outcome, call=kind, key=key, n=n, **where)

    def increment(self, op: str, token: int, n: int, *, entry: str = "ok", counter: str = "ok") -> None:
        self.grant(op, token)
        self.call(op, token, "read", "counter", None)
        self.call(op, token, "write", f"entry-{n}", n, entry)
        if entry == "ok":
            self.call(op, token, "write", "counter", n, counter)

    def release(self, op: str, token: int, released: bool) -> None:
        self.add("release", op=op, lock="s-c0", token=token)
        self.add("released", op=op, lock="s-c0", token=token, released=released)


def state(count: int, entries: dict[int, str]) -> dict[str, Any]:
    return {"s": {"c0": {"counter": str(count), "entries": {str(n): v for n, v in entries.items()}}}}


def kinds(history: History, final: dict[str, Any]) -> set[str]:
    return {v.kind for v in check(history.records, final).violations}


def test_a_clean_history_has_no_violation() -> None:
    h = History()
    h.increment("a", 10, 1)
    h.release("a", 10, True)
    h.increment("b", 12, 2)
    h.increment("c", 14, 3, counter="refused")  # refused: not kept
    h.release("b", 12, False)
    report = check(h.records, state(2, {1: "a 10", 2: "b 12", 3: "c 14"}))
    assert report.violations == []
    assert report.increments["accepted"] == 2
    assert report.increments["refused"] == 1


def test_an_unknown_increment_may_or_may_not_count() -> None:
    h = History()
    h.increment("a", 10, 1, counter="unknown")
    assert kinds(h, state(1, {1: "a 10"})) == set()
    assert kinds(h, state(0, {1: "a 10"})) == set()


def test_lost_update() -> None:
    h = History()
    h.increment("a", 10, 1)
    h.increment("b", 12, 1)  # read the same value: both wrote counter 1
    assert kinds(h, state(1, {1: "b 12"})) == {"lost increment"}


def test_double_counted_increment() -> None:
    h = History()
    h.increment("a", 10, 1)
    h.increment("a2", 12, 2, counter="none")  # died before its counter write: unknown
    assert "double-counted increment" in kinds(h, state(2, {1: "a 10", 2: "a 10"}))
    h2 = History()
    h2.increment("a", 10, 1)
    assert kinds(h2, state(2, {1: "a 10", 2: "x 11"})) == {"double-counted increment"}


def test_accepted_tokens_must_increase() -> None:
    h = History()
    h.increment("a", 10, 1)
    h.increment("b", 9, 2)
    assert "accepted tokens not increasing" in kinds(h, state(2, {1: "a 10", 2: "b 9"}))


def test_a_refused_write_must_not_be_applied() -> None:
    h = History()
    h.increment("a", 10, 1, counter="refused")
    assert "refused write applied" in kinds(h, state(1, {1: "a 10"}))
    h2 = History()
    h2.increment("a", 10, 1, entry="refused")
    assert "refused write applied" in kinds(h2, state(0, {1: "a 10"}))


def test_release_true_after_a_successor_was_granted() -> None:
    h = History()
    h.grant("a", 10)
    h.grant("b", 12)
    h.release("a", 10, True)
    assert kinds(h, state(0, {})) == {"release True after successor"}
    h2 = History()
    h2.grant("a", 10)
    h2.release("a", 10, True)
    h2.grant("b", 12)
    assert kinds(h2, state(0, {})) == set()


def test_issued_tokens_must_increase() -> None:
    h = History()
    h.grant("a", 10)
    h.grant("b", 9)
    assert kinds(h, state(0, {})) == {"issued tokens not increasing"}
    h2 = History()
    h2.grant("a", 10, lock="other")
    h2.grant("b", 9)  # another lock: its own sequence
    assert kinds(h2, state(0, {})) == set()
