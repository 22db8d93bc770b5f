"""A waiter's place from a listing of its queue (queue.position, names.queue_seqs), read
without making a Contender per child: the same answers as queue_contenders gives."""

from __future__ import annotations

import random

import pytest

from fencing_coord.backends.zookeeper.grant import Entry
from fencing_coord.backends.zookeeper.names import parse_contender, queue_contenders, queue_seqs, serial_distance
from fencing_coord.backends.zookeeper.queue import Exhausted, ZooKeeperPlace, position
from fencing_coord.backends.zookeeper.session import Stat
from fencing_coord.fairqueue import EntryGone

pytestmark = pytest.mark.zookeeper

_NONCE = "0123456789abcdef"


def _child(rng: random.Random, seq: int) -> str:
    nonce = f"{rng.getrandbits(64):016x}"
    return rng.choice([
        f"_c_{nonce}-lock-{seq:010d}",  # ours, a lock
        f"_c_{nonce}-candidate__lock__{seq:010d}",  # ours, a candidate: not in a lock's queue
        f"{nonce}__lock__{seq:010d}",  # kazoo
        f"{nonce}__rlock__{seq:010d}",  # kazoo, a reader
        f"_c_{nonce}-lock-{seq:010d}"[:-1] + "x",  # nobody's
        f"lock-{nonce}-{seq:010d}",  # fencing-coord before this layout
        f"x-{rng.getrandbits(40)}-{seq:010d}",  # ZooKeeper's recipe
        "leftover",
    ])


def _expected(children: list[str], entry: Entry, window: int) -> tuple[str | None, bool] | str:
    """What position answered before queue_seqs (from queue_contenders)."""
    others = queue_contenders(children, "lock")
    distances = [serial_distance(c.seq, entry.seq) for c in others]
    if any(abs(d) > window for d in distances):
        return "exhausted"
    before = [(d, c) for d, c in zip(distances, others, strict=True) if d < 0]
    predecessor = max(before, key=lambda pair: pair[0])[1].node if before else None
    return predecessor, len(before) == 1


@pytest.mark.parametrize("seed", range(40))
def test_position_answers_as_the_contenders_do(seed: int) -> None:
    rng = random.Random(seed)
    base = rng.choice([5, 2_147_483_600, -2_147_483_600, 1_000_000])
    seqs = [base + rng.randrange(-60, 60) for _ in range(rng.randrange(1, 30))]
    seqs = [(s + 2**31) % 2**32 - 2**31 for s in dict.fromkeys(seqs)]  # unique, wrapped to int32
    children = [_child(rng, s) for s in seqs]
    mine_seq = rng.choice(seqs)
    mine = f"_c_{_NONCE}-lock-{mine_seq:010d}"
    children[seqs.index(mine_seq)] = mine
    rng.shuffle(children)
    contender = parse_contender(mine, "lock")
    assert contender is not None
    entry = Entry("/p", mine, contender.seq, 100, 1)
    window = rng.choice([2**30, 40, 10])
    stat = Stat(czxid=7, version=0, cversion=0, data_length=0, ephemeral_owner=0)
    assert sorted(queue_seqs(children, "lock")) == sorted((c.seq, c.node) for c in queue_contenders(children, "lock"))
    found = position(children, stat, entry, "lock", window)
    expected = _expected(children, entry, window)
    if expected == "exhausted":
        assert isinstance(found, Exhausted)
        assert found.note is not None
    else:
        assert found == ZooKeeperPlace(entry, expected[0], 7, alone=expected[1])


def test_position_refuses_a_marked_parent_and_a_missing_node() -> None:
    mine = f"_c_{_NONCE}-lock-0000000005"
    entry = Entry("/p", mine, 5, 100, 1)
    marked = Stat(czxid=7, version=1, cversion=0, data_length=12, ephemeral_owner=0)
    assert position([mine], marked, entry, "lock", 2**30) == Exhausted(None)
    with pytest.raises(EntryGone):
        position([], Stat(7, 0, 0, 0, 0), entry, "lock", 2**30)
