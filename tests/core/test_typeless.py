"""The values made without typing and dataclasses (fencing_coord.typeless) behave as the
frozen dataclasses and typing.NamedTuples they replaced: same repr, equality, hash,
refused assignment, pickling, pattern matching and constructor."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
import typing
from collections.abc import Mapping
from typing import Any

import pytest

from fencing_coord.records import Capabilities, Leader, LockState
from fencing_coord.url import BackendURL, CommonOptions, parse_url

# As the modules import it: mypy sees typing's, the runtime ours.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple
else:
    from fencing_coord.typeless import NamedTuple


# The dataclasses as they were (fencing_coord/records.py and url.py before issue 13's
# startup work), to compare against.
@dataclasses.dataclass(frozen=True)
class LockStateWas:
    name: str
    holder: str | None
    token: int | None
    waiters: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class LeaderWas:
    identity: str
    value: bytes
    token: int


@dataclasses.dataclass(frozen=True)
class CapabilitiesWas:
    fifo: bool = True
    injectable_clock: bool = False
    multiprocess: bool = True


@dataclasses.dataclass(frozen=True)
class CommonOptionsWas:
    ttl: float
    namespace: str
    timeout: float
    identity: str


@dataclasses.dataclass(frozen=True)
class BackendURLWas:
    scheme: str
    hosts: tuple[tuple[str, int | None], ...]
    path: str = ""
    username: str | None = None
    password: str | None = None
    query: Mapping[str, str] = dataclasses.field(default_factory=dict)
    raw: str = ""


PAIRS: list[tuple[type, type, tuple[Any, ...]]] = [
    (LockState, LockStateWas, ("orders", "host:1", 7, ("a", "b"))),
    (LockState, LockStateWas, ("orders", None, None)),
    (Leader, LeaderWas, ("host:1", b"http://a", 3)),
    (Capabilities, CapabilitiesWas, ()),
    (Capabilities, CapabilitiesWas, (False, True, False)),
    (CommonOptions, CommonOptionsWas, (10.0, "default", 5.0, "me")),
]


@pytest.mark.parametrize(("now", "was", "args"), PAIRS)
def test_a_value_behaves_as_the_frozen_dataclass_it_replaced(now: type, was: type, args: tuple[Any, ...]) -> None:
    value, old = now(*args), was(*args)
    assert repr(value) == repr(old).replace("Was(", "(", 1)
    assert value == now(*args)
    assert hash(value) == hash(now(*args)) == hash(old)
    assert value != old  # another class, as two dataclasses of equal fields
    different = now(*args[:-1], "other") if args else now(fifo=False)
    assert value != different
    assert now.__match_args__ == was.__match_args__  # type: ignore[attr-defined]
    assert [(p.name, p.default) for p in inspect.signature(now).parameters.values()] == \
        [(p.name, p.default) for p in inspect.signature(was).parameters.values()]
    assert pickle.loads(pickle.dumps(value)) == value
    for name in now.__match_args__:  # type: ignore[attr-defined]
        assert getattr(value, name) == getattr(old, name)
        with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot assign to field '{name}'"):
            setattr(value, name, 1)
        with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot delete field '{name}'"):
            delattr(value, name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.extra = 1


def test_a_backend_url_behaves_as_the_frozen_dataclass_it_replaced() -> None:
    url = parse_url("etcd://app:secret@h1:2379,h2/path?ttl=5")
    old = BackendURLWas(url.scheme, url.hosts, url.path, url.username, url.password, url.query, url.raw)
    assert [getattr(url, n) for n in BackendURLWas.__match_args__] == [getattr(old, n) for n in old.__match_args__]
    assert repr(url) == "BackendURL('etcd://app:***@h1:2379,h2/path?ttl=5')"  # its own repr, password hidden
    assert url == parse_url(url.raw)
    assert url != parse_url("etcd://h1")
    with pytest.raises(TypeError, match="unhashable"):  # its query is a dict, as before
        hash(url)
    assert BackendURL("memory", ()).query == {}
    assert BackendURL("memory", ()) == BackendURL("memory", ())
    assert BackendURL("memory", ()).query is not BackendURL("memory", ()).query
    assert pickle.loads(pickle.dumps(url)) == url
    with pytest.raises(dataclasses.FrozenInstanceError):
        url.raw = ""
    match url:
        case BackendURL("etcd", hosts, "path"):
            assert hosts == (("h1", 2379), ("h2", None))
        case _:
            pytest.fail("BackendURL no longer matches positionally")


def test_a_subclass_may_add_attributes_but_not_assign_fields() -> None:
    class Noted(LockState):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.note = "added"

    noted = Noted("a", None, None)
    assert noted.note == "added"
    with pytest.raises(dataclasses.FrozenInstanceError):
        noted.name = "b"


class _Typed(typing.NamedTuple):
    """A point."""

    x: int
    y: str = "a"

    def doubled(self) -> int:
        return 2 * self.x


class _Plain(NamedTuple):
    """A point."""

    x: int
    y: str = "a"

    def doubled(self) -> int:
        return 2 * self.x


def test_the_named_tuple_is_the_one_typing_makes() -> None:
    assert _Plain.__mro__ == (_Plain, tuple, object)
    assert _Plain._fields == _Typed._fields
    assert _Plain._field_defaults == _Typed._field_defaults
    assert _Plain.__doc__ == _Typed.__doc__
    assert _Plain.__module__ == _Typed.__module__
    assert typing.get_type_hints(_Plain) == typing.get_type_hints(_Typed)  # typing keeps ForwardRefs, we the strings
    assert repr(_Plain(1)).replace("_Plain", "_Typed") == repr(_Typed(1))
    assert _Plain(2).doubled() == 4
    assert _Plain(1, "b") == (1, "b") == _Typed(1, "b")
    assert pickle.loads(pickle.dumps(_Plain(1))) == _Plain(1)


def test_the_named_tuple_refuses_what_typing_refuses() -> None:
    with pytest.raises(TypeError, match="Non-default namedtuple field y cannot follow default field"):
        class _Wrong(NamedTuple):
            x: int = 0
            y: int  # type: ignore[misc]  # what is refused

    with pytest.raises(AttributeError, match="Cannot overwrite NamedTuple attribute _replace"):
        class _Overwrites(NamedTuple):
            x: int

            def _replace(self) -> None: ...  # type: ignore[misc]  # what is refused
