"""Value classes made without importing :mod:`typing` or :mod:`dataclasses`.

Importing ``typing`` and making dataclasses cost about 10 ms of CPU on the path of a
process's first grant (issue 13: connect + first grant <= 1.2x the peer). The modules on
that path define their values with these instead; mypy sees the real thing.

- :class:`NamedTuple`: at runtime, ``class Point(NamedTuple): x: int; y: int = 0`` makes
  the same class as :class:`typing.NamedTuple` does (a :func:`collections.namedtuple`
  with the class body's methods and docstring). A module imports it as::

      TYPE_CHECKING = False
      if TYPE_CHECKING:
          from typing import NamedTuple
      else:
          from fencing_coord.typeless import NamedTuple

- :class:`FrozenValue`: the methods ``@dataclass(frozen=True)`` writes, for a class that
  lists its fields in ``__match_args__`` and sets them in its own ``__init__`` with
  ``object.__setattr__``: the same ``repr``, equality (same class, equal fields), hash
  (of the fields), :class:`dataclasses.FrozenInstanceError` on assignment, pickling.
  What it does not give: :func:`dataclasses.fields`, :func:`dataclasses.replace` and
  :func:`dataclasses.asdict` do not accept such a value.
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

__all__ = ["FrozenValue", "NamedTuple"]

# What typing.NamedTuple refuses in a class body, and what it does not copy onto the class.
_PROHIBITED = frozenset({"__new__", "__init__", "__slots__", "__getnewargs__", "_fields", "_field_defaults",
                         "_make", "_replace", "_asdict", "_source"})
_SPECIAL = frozenset({"__module__", "__name__", "__annotations__"})


class _NamedTupleMeta(type):
    def __new__(mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> Any:
        if namespace.get("_root"):  # NamedTuple itself
            return super().__new__(mcls, name, bases, namespace)
        annotations: dict[str, Any] = namespace.get("__annotations__", {})
        defaults = []
        for field in annotations:
            if field in namespace:
                defaults.append(namespace[field])
            elif defaults:
                raise TypeError(f"Non-default namedtuple field {field} cannot follow default field"
                                f"{'s' if len(defaults) > 1 else ''}")
        # Field names known only at runtime, which mypy's namedtuple() refuses.
        made = namedtuple(name, list(annotations), defaults=defaults,  # type: ignore[misc]
                          module=namespace.get("__module__"))
        made.__annotations__ = dict(annotations)
        for key, value in namespace.items():
            if key in _PROHIBITED:
                raise AttributeError("Cannot overwrite NamedTuple attribute " + key)
            if key not in _SPECIAL and key not in made._fields:
                setattr(made, key, value)
        return made


class NamedTuple(metaclass=_NamedTupleMeta):
    """Base class of a named tuple (see the module docstring); ``class X(NamedTuple)``
    returns a subclass of :class:`tuple`, not of this class."""

    _root = True


class FrozenValue:
    """Base of a frozen value class (see the module docstring)."""

    __slots__ = ()
    __match_args__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__match_args__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__match_args__)
        return f"{type(self).__qualname__}({fields})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    # As a frozen dataclass: a field is never assigned or deleted, nor is any attribute of
    # the class that declares the fields (a subclass may add attributes of its own).
    def __setattr__(self, name: str, value: object) -> None:
        if name in self.__match_args__ or "__match_args__" in type(self).__dict__:
            _refuse(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if name in self.__match_args__ or "__match_args__" in type(self).__dict__:
            _refuse(f"cannot delete field {name!r}")
        object.__delattr__(self, name)


def _refuse(message: str) -> NoReturn:
    # Imported only when someone assigns: dataclasses is not imported otherwise.
    from dataclasses import FrozenInstanceError

    raise FrozenInstanceError(message)
