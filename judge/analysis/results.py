"""Typed results: dataclasses whose ``to_dict()`` is the JSON the reports write.

Each field of a result is one key of its JSON object (a field's ``metadata["key"]`` names the key where
it is not a Python name: ``lambda``; ``metadata["json"] = False`` keeps a field out of the JSON). A key that a
result may lack (a rate's ``variance`` when outputs
are not clustered, a group's ``reason`` when it is estimable) holds ``ABSENT`` when it is not there, and
``to_dict`` leaves it out; ``None`` is a JSON ``null``. ``from_dict`` reads a result back, from the
statistics' dicts or from a report's JSON, and ``to_dict`` then gives the keys in the order they came,
so a result read and written again is the same bytes; a key no field names (one a newer statistic adds)
is kept in ``extra`` in its place. Fields set after reading follow, in the order the class declares them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import lru_cache
from typing import Any, Mapping, TypeVar, Union

R = TypeVar("R", bound="Result")


class Absent:
    """The type of ``ABSENT``: a key the result does not have (falsy, so ``entry.reason or ''`` reads well)."""

    _instance: Absent | None = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "ABSENT"

    def __reduce__(self):
        return (Absent, ())


ABSENT: Any = Absent()


def present(value: Any) -> bool:
    """Whether a field holds a key of the JSON (``None`` included)."""
    return value is not ABSENT


def opt(value: Any, default: Any = None) -> Any:
    """A field's value, or ``default`` where the result does not have that key."""
    return default if value is ABSENT else value


@dataclasses.dataclass(kw_only=True)
class Result:
    """Base of every typed result (see the module's docstring)."""

    extra: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)
    _keys: tuple[str, ...] | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any] | R) -> R:
        """The result a dict holds (nested results typed too); a result given is returned as it is."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__}.from_dict needs a mapping, got {type(data).__name__}")
        by_key = _names_by_key(cls)
        hints = _hints(cls)
        values, extra = {}, {}
        for key, value in data.items():
            name = by_key.get(key)
            if name is None:
                extra[key] = value
            else:
                values[name] = _load(hints[name], value)
        for name in by_key.values():
            values.setdefault(name, ABSENT)
        result = cls(**values, extra=extra)
        result._keys = tuple(data)
        return result

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this result (nested results as dicts), keys in their order (module docstring)."""
        out: dict[str, Any] = {}
        names = _names_by_key(type(self))
        for key in self._keys or ():
            if key in names:
                value = getattr(self, names[key])
                if value is not ABSENT:
                    out[key] = _dump(value)
            elif key in self.extra:
                out[key] = _dump(self.extra[key])
        for key, name in names.items():
            value = getattr(self, name)
            if value is not ABSENT and key not in (self._keys or ()):
                out[key] = _dump(value)
        for key, value in self.extra.items():
            out.setdefault(key, _dump(value))
        return out


@lru_cache(maxsize=None)
def _names_by_key(cls: type) -> dict[str, str]:
    """JSON key -> field name, in the order the class declares its fields."""
    return {
        f.metadata.get("key", f.name): f.name
        for f in dataclasses.fields(cls)
        if f.name not in ("extra", "_keys") and f.metadata.get("json", True)
    }


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_result(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Result)


@lru_cache(maxsize=None)
def _holds_results(tp: Any) -> bool:
    if _is_result(tp):
        return True
    return any(_holds_results(arg) for arg in typing.get_args(tp))


def _load(tp: Any, value: Any) -> Any:
    """``value`` with every nested mapping that ``tp`` says is a result read into that result."""
    if value is None or value is ABSENT or not _holds_results(tp):
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            if _holds_results(arg):
                return _load(arg, value)
        return value
    if _is_result(tp):
        return tp.from_dict(value) if isinstance(value, Mapping) else value
    if origin in (dict, Mapping) and isinstance(value, Mapping):
        item = typing.get_args(tp)[1]
        return {k: _load(item, v) for k, v in value.items()}
    if origin in (list, typing.Sequence) and isinstance(value, (list, tuple)):
        item = typing.get_args(tp)[0]
        return [_load(item, v) for v in value]
    return value


def _dump(value: Any) -> Any:
    if isinstance(value, Result):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


def key(name: str, default: Any = ABSENT) -> Any:
    """A field stored under the JSON key ``name`` (one that is not a Python name)."""
    return dataclasses.field(default=default, metadata={"key": name})
