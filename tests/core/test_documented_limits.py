"""The README's "Limits" table states the limits the code enforces (issue 12, item 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

import fencing_coord as fc
from fencing_coord import election, validation
from fencing_coord.stores import MAX_VALUE_SIZE

README = Path(__file__).resolve().parents[2] / "README.md"
LIMITS = README.read_text().split("### Limits", 1)[1].split("\n## ", 1)[0]


def test_the_numbers_in_the_table_are_the_enforced_ones() -> None:
    assert validation.MAX_NAME_LENGTH == 200
    assert "1 to 200 characters" in LIMITS
    assert election.MAX_VALUE_SIZE == 65_536
    assert "64 KiB (65 536 bytes)" in LIMITS
    assert MAX_VALUE_SIZE == 1 << 20
    assert "at most 1 MiB" in LIMITS
    assert validation.MAX_SECONDS == 365 * 24 * 3600
    assert "365 days" in LIMITS


def test_zookeeper_store_limit_is_the_documented_one() -> None:
    zookeeper = pytest.importorskip("fencing_coord.backends.zookeeper")
    # One znode per key since issue 13: a value, not a whole resource, must fit one request.
    assert zookeeper.ZooKeeperStore.max_value_size == 1_000_000
    assert "1 000 000 bytes per value" in LIMITS


@pytest.mark.parametrize("name", ["x" * 201, "a/b", ".", "..", "tab\there", "nul\x00", "zero\u200bwidth", "\ue000"])
def test_the_refused_names_are_refused(name: str) -> None:
    with fc.connect("memory://limits") as backend, pytest.raises(fc.InvalidArgument):
        backend.acquire(name, timeout=0)


def test_a_name_of_200_characters_is_accepted() -> None:
    with fc.connect("memory://limits") as backend:
        assert backend.acquire("x" * 200, timeout=0).token >= 1
