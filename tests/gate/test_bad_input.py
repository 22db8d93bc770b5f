"""Bad input, on every store: each gets a clear error before the store is touched, or is
stored exactly; a refused call changes nothing already stored."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fencing_coord.errors import InvalidArgument, InvalidArgumentType
from fencing_coord.gate import FencedResource, UnfencedResource
from fencing_coord.stores import MemoryStore, Store
from fencing_coord.stores.base import MAX_TOKEN, MAX_VALUE_SIZE


@pytest.fixture
def resource(store: Store) -> Iterator[FencedResource]:
    """A resource holding ``orders``/``k`` = ``b"kept"`` at token 5."""
    gate = FencedResource(store)
    gate.write("orders", "k", b"kept", token=5).raise_for_status()
    yield gate
    # Whatever the test did, the refused calls changed nothing.
    assert gate.read("orders", "k") == b"kept"
    assert gate.highest_token("orders") == 5


Call = Callable[[FencedResource], object]

BAD_VALUES: list[tuple[object, type[Exception], str]] = [
    ("text", InvalidArgumentType, "value must be bytes, not str; encode it first"),
    (None, InvalidArgumentType, "value must be bytes, not NoneType"),
    (42, InvalidArgumentType, "value must be bytes, not int"),
    ([1, 2], InvalidArgumentType, "value must be bytes, not list"),
    (b"x" * (MAX_VALUE_SIZE + 1), InvalidArgument, f"the limit is {MAX_VALUE_SIZE} bytes"),
]


@pytest.mark.parametrize(("value", "error", "message"), BAD_VALUES, ids=["str", "None", "int", "list", "too-big"])
def test_bad_values(resource: FencedResource, value: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        resource.write("orders", "k", value, token=9)


BAD_TOKENS: list[tuple[object, type[Exception], str]] = [
    (True, InvalidArgumentType, "token must be an int, not bool"),
    (False, InvalidArgumentType, "token must be an int, not bool"),
    (-1, InvalidArgument, "token must be >= 0, got -1"),
    (9.0, InvalidArgumentType, "token must be an int, not float"),
    ("9", InvalidArgumentType, "token must be an int, not str"),
    (MAX_TOKEN + 1, InvalidArgument, "does not fit in 64 bits"),
]


@pytest.mark.parametrize(("token", "error", "message"), BAD_TOKENS, ids=[repr(t[0]) for t in BAD_TOKENS])
@pytest.mark.parametrize("operation", ["write", "fenced read"])
def test_bad_tokens(resource: FencedResource, operation: str, token: Any, error: type[Exception],
                    message: str) -> None:
    call: Call = (lambda r: r.write("orders", "k", b"bad", token=token)) if operation == "write" else (
        lambda r: r.read("orders", "k", token=token))
    with pytest.raises(error, match=message):
        call(resource)


def test_a_write_needs_a_token(resource: FencedResource) -> None:
    # read(token=None) is the plain read; a write has no unfenced form.
    with pytest.raises(InvalidArgumentType, match="token must be an int, not NoneType"):
        resource.write("orders", "k", b"bad", token=None)  # type: ignore[arg-type]


BAD_NAMES: list[tuple[object, type[Exception], str]] = [
    ("", InvalidArgument, "must be a non-empty string"),
    (None, InvalidArgumentType, "must be a str, not NoneType"),
    (7, InvalidArgumentType, "must be a str, not int"),
    (b"orders", InvalidArgumentType, "must be a str, not bytes"),
    ("a/b", InvalidArgument, "contains '/'"),
    ("nul\x00", InvalidArgument, "unprintable"),
    ("x" * 201, InvalidArgument, "the limit is 200"),
]


@pytest.mark.parametrize(("bad", "error", "message"), BAD_NAMES, ids=[repr(n[0])[:12] for n in BAD_NAMES])
@pytest.mark.parametrize("where", ["resource name", "key"])
def test_bad_names_and_keys(resource: FencedResource, where: str, bad: Any, error: type[Exception],
                            message: str) -> None:
    name, key = (bad, "k") if where == "resource name" else ("orders", bad)
    calls: list[Call] = [
        lambda r: r.write(name, key, b"bad", token=9),
        lambda r: r.read(name, key),
        lambda r: r.read(name, key, token=9),
    ]
    if where == "resource name":
        calls.append(lambda r: r.highest_token(name))
    for call in calls:
        with pytest.raises(error, match=f"^{where}.*{re.escape(message)}"):
            call(resource)


def test_unfenced_resource_checks_arguments_the_same_way(store: Store) -> None:
    gate = UnfencedResource(store)
    with pytest.raises(InvalidArgumentType, match="token must be an int, not bool"):
        gate.write("orders", "k", b"v", token=True)
    with pytest.raises(InvalidArgumentType, match="value must be bytes"):
        gate.write("orders", "k", "v", token=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="key must be a non-empty string"):
        gate.read("orders", "")
    assert gate.read("orders", "k") is None


def test_resource_needs_a_store_and_a_bool_strict() -> None:
    with pytest.raises(InvalidArgumentType, match=r"store must be a fencing_coord\.stores\.Store, not dict"):
        FencedResource({})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentType, match="strict must be a bool, not str"):
        FencedResource(MemoryStore(), strict="yes")  # type: ignore[arg-type]


def test_errors_are_both_ours_and_builtin() -> None:
    assert issubclass(InvalidArgument, ValueError)
    assert issubclass(InvalidArgumentType, TypeError)


# SQL and driver metacharacters: parameterized queries store them verbatim.
TRICKY = [
    "x'; DROP TABLE fc_value; --",
    'a"b',
    "%s",
    "%(resource)s",
    "?",
    "back\\slash",
    "semi;colon",
    "Robert'); DELETE FROM fc_resource WHERE ('1'='1",
    "名前 ünïcødé",
    " spaces ",
    "*",
    "_%",
]


def test_sql_metacharacters_are_stored_verbatim(store: Store) -> None:
    gate = FencedResource(store)
    for i, text in enumerate(TRICKY):
        gate.write(text, text, text.encode(), token=10 + i).raise_for_status()
    for i, text in enumerate(TRICKY):
        assert gate.read(text, text) == text.encode()
        assert gate.highest_token(text) == 10 + i
        assert gate.read(text, text, token=10 + i) == text.encode()
        assert not gate.write(text, text, b"stale", token=9).accepted
    # LIKE-style wildcards match nothing but themselves.
    assert gate.read("_%", "other") is None
    assert gate.highest_token("x") is None
    assert gate.read("*", "*") == b"*"
