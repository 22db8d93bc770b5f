"""Which lock names :func:`fencing_coord.validation.check_name` takes: printable ASCII
is taken without a look at each character's category; anything else is looked at."""

from __future__ import annotations

import pytest

from fencing_coord.errors import InvalidArgument
from fencing_coord.validation import check_name


@pytest.mark.parametrize("name", ["orders", "a b", "~!@#$%^&*()_+-=[]{};':\",.<>?`|\\", "é", "注文", "x" * 200])
def test_printable_names_are_taken(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["nul\x00", "tab\t", "del\x7f", "\x1f", "nbsp-is-fine-but-zwsp\u200b",
                                  "private\ue000", "unassigned\u0378", "surrogate\ud800", "é\x00"])
def test_unprintable_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgument, match="unprintable"):
        check_name(name)
