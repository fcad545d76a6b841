"""Feed queries (API.md §2): the filters, OR group, sort and limit of `?f` and `?c`, and matching.

Pure functions: parsing query parameters into a Query, and deciding whether a document matches.
Comparisons are typed by the schema (numbers compare as numbers); without one, by the stored value.
Regular expressions use the `regex` module, whose matches can be given a time limit, so a hostile
pattern costs a bounded time and then a 400. The full-text operator `ft` finds words the way
vte.cx's full-text index does: in text normalized by NFKC and lower-cased, anywhere.
"""

from __future__ import annotations

import operator
import re
import time
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import regex

from feedstore import cursor
from feedstore.entry import ATOM_FIELDS
from feedstore.errors import InvalidOption
from feedstore.fields import INT_MAX, INT_MIN
from feedstore.options import is_option
from feedstore.schema import SCALAR_TYPES, Schema, TooWide, scalar_from_text

OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "rg", "fm", "bm", "ft")
TEXT_OPERATORS = ("rg", "fm", "bm", "ft")  # they work on the text of a value
COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge")  # typed by the schema
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
REGEX_BUDGET = 1.0  # seconds of regular-expression matching one request may spend
MAX_PATTERN = 1000
_FILTER = re.compile(rf"(?P<field>[^\s]+?)-(?P<op>{'|'.join(OPERATORS)})-(?P<value>.*)", re.S)
_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(\.(___)?[A-Za-z_][A-Za-z0-9_\-]*)*")
_MISSING = object()
_ORDER = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}


@dataclass(frozen=True)
class Filter:
    """`<field>-<op>-<value>`: `path` is the dotted field, split."""

    path: tuple[str, ...]
    op: str
    value: str

    @property
    def field(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Sort:
    path: tuple[str, ...]
    descending: bool = False

    @property
    def field(self) -> str:
        return ".".join(self.path)


@dataclass
class Query:
    """What `?f` or `?c` asks for: filters (AND), an OR group, a sort and a limit."""

    filters: list[Filter] = field(default_factory=list)
    any_of: list[Filter] = field(default_factory=list)
    sort: Sort | None = None
    limit: int = DEFAULT_LIMIT
    nometa: bool = False

    @property
    def filtered(self) -> bool:
        return bool(self.filters or self.any_of)

    def fingerprint(self) -> str:
        """What a cursor is bound to: the same filters and sort, in the same order."""
        parts = [f"{f.field}-{f.op}-{f.value}" for f in self.filters]
        parts += [f"|{f.field}-{f.op}-{f.value}" for f in self.any_of]
        if self.sort is not None:
            parts.append(f"s={self.sort.field}{'-desc' if self.sort.descending else ''}")
        return "&".join(parts)


def check_options(args: Mapping[str, str]) -> None:
    """The feed options' syntax, in every read mode: `?e&l=0` is 400 even though `?e` doesn't
    page. (What a value means is checked by `parse`, which needs the schema.)"""
    if "l" in args:
        _limit(args["l"], MAX_LIMIT)
    if "s" in args:
        _sort(args["s"], None)
    if "p" in args:
        cursor.check_syntax(args["p"])


def parse(args: Sequence[tuple[str, str]], schema: Schema | None, fetch_limit: int) -> Query:
    """The Query of a request's parameters (already percent-decoded), in their order."""
    query = Query(nometa=any(name == "_nometa" for name, _ in args))
    for name, value in args:
        if name == "l":
            query.limit = _limit(value, fetch_limit)
        elif name == "s":
            query.sort = _sort(value, schema)
        elif is_option(name):
            continue
        else:
            group = query.any_of if name.startswith("|") else query.filters
            group.append(_filter(name.removeprefix("|"), value, schema))
    return query


def _limit(value: str, fetch_limit: int) -> int:
    if value == "*":
        return fetch_limit
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidOption(f"Limit must be a number from 1 to {MAX_LIMIT}, or *: l={value}")
    return int(value)


def _sort(value: str, schema: Schema | None) -> Sort:
    name, descending = (value[: -len("-desc")], True) if value.endswith("-desc") else (value, False)
    return Sort(_path(name, schema, f"s={value}"), descending)


def _filter(name: str, value: str, schema: Schema | None) -> Filter:
    """`field=value` is eq; `field-op-value` (value possibly continued after an `=`) is op."""
    match = _FILTER.fullmatch(name)
    if match is None:
        parsed = Filter(_path(name, schema, name), "eq", value)
        parameter = f"{name}={value}"
    else:
        text = match["value"] + (f"={value}" if value else "")
        parsed = Filter(_path(match["field"], schema, name), match["op"], text)
        parameter = f"{name}={value}" if value else name
    if parsed.op == "rg":
        _compile(parsed.value)
    if parsed.op == "ft" and not words(parsed.value):
        raise InvalidOption(f"Full-text search needs a word: {name}")
    declared = schema.type_of(parsed.path) if schema is not None else None
    if declared in SCALAR_TYPES and parsed.op in COMPARISONS:
        _check_type(parsed, declared, parameter)
    return parsed


def words(value: str) -> list[str]:
    """The words an `ft` filter looks for: its value split at `,`, normalized, empty ones left out.

    vte.cx's full-text index keeps every suffix of a value's normalized text, so a word is found
    anywhere in a value (a substring, across spaces), whatever its case or width.
    """
    return [normalized(word) for word in value.split(",") if word.strip()]


def normalized(text: str) -> str:
    """Text as full-text search compares it: NFKC (full-width ASCII to half-width, half-width
    kana to full-width), then lower case, as vte.cx normalizes its index."""
    return unicodedata.normalize("NFKC", text).lower()


def _check_type(condition: Filter, declared: str, parameter: str) -> None:
    """A comparison's value must be a value the field's declared type can hold (API.md §4.5):
    a comparison that can never hold is a mistake to report, not an empty feed. Values are
    compared, not stored, so an integer field takes any number without a fraction (`12.0`)."""
    try:
        value = scalar_from_text(condition.value, "boolean" if declared == "boolean" else "number")
        if declared == "integer" and not float(value).is_integer():
            raise ValueError(condition.value)
        if declared == "integer" and not INT_MIN <= value <= INT_MAX:
            raise TooWide(condition.value)
    except TooWide as e:
        message = f"Filter value is wider than 64 bits: {parameter}"
        raise InvalidOption(message, field=condition.field) from e
    except ValueError as e:
        message = f"Filter value is not a valid {declared}: {parameter}"
        raise InvalidOption(message, field=condition.field) from e


def _path(name: str, schema: Schema | None, parameter: str) -> tuple[str, ...]:
    if not _FIELD_PATH.fullmatch(name):
        raise InvalidOption(f"Filter field is invalid: {parameter}")
    path = tuple(name.split("."))
    if schema is not None and path[0] not in ATOM_FIELDS and schema.node(path) is None:
        raise InvalidOption(f"Unknown field: {name}", field=name)
    return path


def _compile(pattern: str) -> Any:
    if len(pattern) > MAX_PATTERN:
        raise InvalidOption(f"Regular expression is longer than {MAX_PATTERN} characters.")
    try:
        return regex.compile(pattern)
    except regex.error as e:
        raise InvalidOption(f"Regular expression is invalid: {pattern}: {e}") from e


# -- matching -------------------------------------------------------------------------------


class Matcher:
    """Decides whether documents match a query; holds the request's regular-expression budget."""

    def __init__(self, query: Query, schema: Schema | None) -> None:
        self.query = query
        self.schema = schema
        conditions = query.filters + query.any_of
        self.patterns = {f.value: _compile(f.value) for f in conditions if f.op == "rg"}
        self.words = {f.value: words(f.value) for f in conditions if f.op == "ft"}
        self.deadline = time.monotonic() + REGEX_BUDGET

    def __call__(self, document: Mapping[str, Any]) -> bool:
        if not all(self._holds(f, document) for f in self.query.filters):
            return False
        return not self.query.any_of or any(self._holds(f, document) for f in self.query.any_of)

    def _holds(self, condition: Filter, document: Mapping[str, Any]) -> bool:
        values = list(values_at(document, condition.path))
        if condition.op == "ft":
            # Every word must be found, each in any value at the path (as vte.cx intersects the
            # entries each word finds).
            texts = [normalized(text) for text in map(_as_text, values) if text is not None]
            return all(any(word in text for text in texts) for word in self.words[condition.value])
        if condition.op == "ne":
            return all(not self._compare(condition, value) for value in values) if values else True
        return any(self._compare(condition, value) for value in values)

    def _compare(self, condition: Filter, value: Any) -> bool:
        op, wanted = condition.op, condition.value
        if op == "ne":
            op = "eq"
        if op in TEXT_OPERATORS:
            text = _as_text(value)
            if text is None:
                return False
            if op == "fm":
                return text.startswith(wanted)
            if op == "bm":
                return text.endswith(wanted)
            return self._regex(wanted, text)
        left, right = comparable(value, wanted, self._declared(condition.path))
        if left is None or right is None:
            return False
        if op == "eq":
            return bool(left == right)
        try:
            return {
                "lt": left < right,
                "le": left <= right,
                "gt": left > right,
                "ge": left >= right,
            }[op]
        except TypeError:
            return False

    def _declared(self, path: tuple[str, ...]) -> str | None:
        return self.schema.type_of(path) if self.schema is not None else None

    def _regex(self, pattern: str, text: str) -> bool:
        remaining = self.deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            return self.patterns[pattern].fullmatch(text, timeout=min(remaining, 0.1)) is not None
        except TimeoutError as e:
            raise InvalidOption(f"Regular expression took too long: {pattern}") from e


def values_at(document: Any, path: Sequence[str]) -> Iterator[Any]:
    """Every value at a dotted path; lists along the way are searched item by item."""
    if not path:
        if isinstance(document, list):
            yield from document
        else:
            yield document
        return
    if isinstance(document, list):
        for item in document:
            yield from values_at(item, path)
    elif isinstance(document, Mapping):
        value = document.get(path[0], _MISSING)
        if value is not _MISSING:
            yield from values_at(value, path[1:])


def comparable(value: Any, wanted: str, declared: str | None) -> tuple[Any, Any]:
    """The stored value and the filter's text as values of one type (None where they can't be)."""
    kind = declared or _kind_of(value)
    if kind in ("integer", "number"):
        number = _as_number(wanted)
        return (value if _is_number(value) else _as_number(_as_text(value))), number
    if kind == "boolean":
        if isinstance(value, bool) and wanted in ("true", "false"):
            return value, wanted == "true"
        return None, None
    text = _as_text(value)
    return text, (wanted if text is not None else None)


def sort_value(document: Mapping[str, Any], path: Sequence[str], declared: str | None) -> Any:
    """The value a document sorts by (its first at the path), or None when it has none."""
    value = next(values_at(document, path), None)
    if value is None or isinstance(value, dict | list):
        return None
    kind = declared or _kind_of(value)
    if kind in ("integer", "number"):
        return value if _is_number(value) else _as_number(_as_text(value))
    return _as_text(value)


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    return "string"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_number(text: str | None) -> int | float | None:
    """A number's text as XML values read (integral text exactly, as an int), or None."""
    if text is None:
        return None
    try:
        return scalar_from_text(text, "number")
    except ValueError:
        return None


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return str(value)
    if isinstance(value, Mapping) and isinstance(value.get("______text"), str):
        return str(value["______text"])
    return None
