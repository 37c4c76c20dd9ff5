"""Config tables validated into frozen structs, with every problem in a table at once.

`Table` is the base of every settings class: a frozen, keyword-only `msgspec.Struct` that
refuses unknown keys. `validate(cls, data)` turns one TOML table (a dict) into an instance
or raises `TableError`, which lists each problem with its key path inside the table
(`("any", 2, "threshold")`) and a plain description ("expected a number from 0 to 100,
got 150"). A field's type is checked by `msgspec.convert` with `msgspec.Meta` bounds, not
strictly: what the pydantic versions read still reads (`_lax`: "yes" as true, "25" as
25). `Annotated` markers add what a type cannot say: `Before(parse)` turns a written
value ("10m") into the field's value first, `After(check)` checks or normalises the
typed value; a ValueError from either is the message. `__post_init__` checks across
fields (its ValueError is reported at the table). Strings are stripped of surrounding
blanks. A parser's result is final unless the field's type holds tables (phrases, surge),
which are then validated as tables. The converters are built once per class, at first use.

msgspec, not pydantic: importing pydantic and building these models took ~200 ms of every
command's start (issue 19); msgspec imports in ~3 ms and builds a struct class in µs.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal, Self, TypeVar, Union, get_args, get_origin

import msgspec
from msgspec import Struct

Loc = tuple[int | str, ...]
Errors = list[tuple[Loc, str]]
T = TypeVar("T", bound="Table")


class Table(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A validated config table (read-only). Subclasses say `frozen=True, kw_only=True`
    again: msgspec applies `kw_only` to the fields a class defines, not to inherited ones,
    and type checkers want `frozen` said on each."""

    @classmethod
    def from_table(cls, data: Any) -> Self:
        """Validate a table as the config file holds it; raise `TableError`."""
        return validate(cls, data)


class Before(Struct, frozen=True):
    """`Annotated` marker: `parse(written value)` gives the field's value (ValueError: why not)."""

    parse: Callable[[Any], Any]


class After(Struct, frozen=True):
    """`Annotated` marker: `check(typed value)` returns it (maybe normalised) or raises
    ValueError."""

    check: Callable[[Any], Any]


class TableError(ValueError):
    """A table did not validate: `errors` holds (key path inside the table, description)."""

    def __init__(self, errors: Errors) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{'.'.join(map(str, loc)) or '(table)'}: {m}"
                                   for loc, m in errors))


def validate(cls: type[T], data: Any) -> T:
    """`data` (a TOML table) as a `cls`; raise `TableError` naming every problem."""
    errors: Errors = []
    value = _table(cls, data, (), errors)
    if errors or value is _INVALID:
        raise TableError(errors)
    return typing.cast(T, value)


_INVALID: Any = object()  # a value that failed (its problem is already recorded)
Convert = Callable[[Any, Loc, Errors], Any]


class _Field(Struct, frozen=True):
    name: str  # the attribute
    convert: Convert
    required: bool


_FIELDS: dict[type, dict[str, _Field]] = {}

# what a list-valued key holds, for "expected a list of ..." messages
_LISTS = {
    "channels": 'channel names, such as ["desk-email"]',
    "feeds": 'feed names or tags, such as ["russia"]',
    "tags": 'tags, such as ["russia"]',
    "to": 'addresses, such as ["desk@example.org"]',
    "fields": 'fields, such as ["title", "summary"]',
    "fulltext_allow": 'networks, such as ["10.1.0.0/16"]',
    "like": 'example texts, such as ["Kursk residents evacuated via Belarus"]',
    "unlike": 'example texts, such as ["Battle of Kursk anniversary"]',
}


def _table(cls: type[Table], data: Any, loc: Loc, errors: Errors) -> Any:
    if not isinstance(data, dict):
        errors.append((loc, f"expected a table, got {data!r}"))
        return _INVALID
    fields = _fields(cls)
    values: dict[str, Any] = {}
    failed = False
    for key, raw in data.items():
        spec = fields.get(key)
        if spec is None:
            errors.append(((*loc, key), "unknown key" + _unknown_key_hint(str(key), fields)))
            failed = True
        elif (value := spec.convert(raw, (*loc, key), errors)) is _INVALID:
            failed = True
        else:
            values[spec.name] = value
    for key, spec in fields.items():
        if spec.required and key not in data:
            errors.append(((*loc, key), "required key is missing"))
            failed = True
    if failed:
        return _INVALID
    try:
        return cls(**values)
    except ValueError as exc:  # __post_init__: a check across fields
        errors.append((loc, str(exc)))
        return _INVALID


def _unknown_key_hint(key: str, fields: dict[str, _Field]) -> str:
    """Where an inline secret belongs, or the key that was probably meant."""
    if f"{key}_env" in fields:
        return (
            f": secrets are never written inline; put it in an environment variable "
            f'and set {key}_env = "VAR_NAME" (or {key}_file = "path")'
        )
    close = difflib.get_close_matches(key, sorted(fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields(cls: type[Table]) -> dict[str, _Field]:
    if (known := _FIELDS.get(cls)) is None:
        hints = typing.get_type_hints(cls, include_extras=True)
        known = _FIELDS[cls] = {
            f.encode_name: _Field(
                f.name,
                _converter(hints[f.name], f.encode_name),
                f.default is msgspec.NODEFAULT and f.default_factory is msgspec.NODEFAULT,
            )
            for f in msgspec.structs.fields(cls)
        }
    return known


def _converter(tp: Any, key: str) -> Convert:
    """How one field's written value becomes its value (problems go to `errors`)."""
    befores: list[Callable[[Any], Any]] = []
    afters: list[Callable[[Any], Any]] = []
    if get_origin(tp) is Annotated:
        base, *meta = get_args(tp)
        befores = [m.parse for m in meta if isinstance(m, Before)]
        afters = [m.check for m in meta if isinstance(m, After)]
        bounds = [m for m in meta if isinstance(m, msgspec.Meta)]
        tp = Annotated[(base, *bounds)] if bounds else base
    core = _core(tp, key)
    final = bool(befores) and not _holds_table(tp)

    def convert(value: Any, loc: Loc, errors: Errors) -> Any:
        value = _stripped(value)
        try:
            for parse in befores:
                value = parse(value)
            if not final:
                value = core(value, loc, errors)
                if value is _INVALID:
                    return _INVALID
            for check in afters:
                value = check(value)
        except ValueError as exc:
            errors.append((loc, str(exc)))
            return _INVALID
        return value

    return convert


def _core(tp: Any, key: str) -> Convert:
    """The type check of `tp`: tables and lists of tables here, the rest by msgspec."""
    if isinstance(tp, type) and issubclass(tp, Table):
        table = tp
        return lambda value, loc, errors: _table(table, value, loc, errors)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType) and _holds_table(tp):  # an optional table
        (inner,) = [a for a in get_args(tp) if a is not type(None)]
        check = _core(inner, key)
        return lambda value, loc, errors: None if value is None else check(value, loc, errors)
    if origin is tuple and len(args := get_args(tp)) == 2 and args[1] is Ellipsis:
        return _tuple_of(_converter(args[0], key), key)
    expected = _expected(tp)
    scalar = _scalar(tp)

    def leaf(value: Any, loc: Loc, errors: Errors) -> Any:
        try:
            return msgspec.convert(_lax(value, scalar), tp, strict=False)
        except msgspec.ValidationError:
            errors.append((loc, f"expected {expected}, got {value!r}"))
            return _INVALID

    return leaf


_TRUE = frozenset({"true", "on", "yes", "y", "t", "1"})
_FALSE = frozenset({"false", "off", "no", "n", "f", "0"})


def _scalar(tp: Any) -> Any:
    """The plain type under bounds and an optional: `Annotated[int, Meta] | None` -> int."""
    if get_origin(tp) is Annotated:
        return _scalar(get_args(tp)[0])
    if get_origin(tp) in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        return _scalar(options[0]) if len(options) == 1 else None
    return tp


def _lax(value: Any, scalar: Any) -> Any:
    """What the pydantic versions read besides TOML's own types, so their configs still
    load: "yes"/"no"/"on"/"off" and 1.0/0.0 as booleans, numbers in quotes as Python reads
    them ("025", "+32", "1_000", ".5"). `true` where a number belongs stays an error."""
    if scalar is bool:
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        if isinstance(value, float) and value in (0.0, 1.0):
            return bool(value)
    elif scalar in (int, float) and isinstance(value, str):
        try:
            return scalar(value)
        except ValueError:
            pass
    return value


def _tuple_of(item: Convert, key: str) -> Convert:
    what = _LISTS.get(key, 'values, such as ["a", "b"]')

    def convert(value: Any, loc: Loc, errors: Errors) -> Any:
        if not isinstance(value, list | tuple):
            errors.append((loc, f"expected a list of {what}, got {value!r}"))
            return _INVALID
        items = tuple(item(v, (*loc, i), errors) for i, v in enumerate(value))
        return _INVALID if _INVALID in items else items

    return convert


def _holds_table(tp: Any) -> bool:
    if isinstance(tp, type) and issubclass(tp, Table):
        return True
    return any(_holds_table(a) for a in get_args(tp) if a is not Ellipsis)


def _stripped(value: Any) -> Any:
    """A string without surrounding blanks, and always a new object: the config keeps it,
    and a string kept from the TOML parse pins the parse's freed memory (at 50,000 feeds
    the process stayed ~20 MB larger). Lists and tables are stripped item by item, by their
    own converters."""
    return (value + " ").strip() if isinstance(value, str) else value


_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _expected(tp: Any) -> str:
    """What a value of `tp` looks like, in words."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        return _expected(base) + "".join(_bounds(m) for m in meta if isinstance(m, msgspec.Meta))
    if origin is Literal:
        return "one of " + ", ".join(map(repr, get_args(tp)))
    if origin in (Union, types.UnionType):
        return " or ".join(_expected(a) for a in get_args(tp) if a is not type(None))
    return _NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _bounds(meta: msgspec.Meta) -> str:
    if meta.min_length == 1:
        return " that is not empty"
    if meta.ge is not None and meta.le is not None:
        return f" from {meta.ge:g} to {meta.le:g}"
    parts = [f"{word} {value:g}" for word, value in (
        ("greater than", meta.gt), ("at least", meta.ge), ("less than", meta.lt),
        ("at most", meta.le)) if value is not None]
    return " " + " and ".join(parts) if parts else ""
