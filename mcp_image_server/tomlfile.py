"""A TOML file of ``[[name]]`` tables read as a settings cast, with errors that name file, line and key.

``MCP_TOKENS_FILE`` (``[[tokens]]``) and ``MCP_PRICES_FILE`` (``[[prices]]``) share this: read the
file, parse it with ``tomllib``, check it holds only the one array of tables, and report a bad
table as ``<path> line <n>: <what is wrong with which key>`` (``n`` is the table's header line).
Standard library only: this module sits at the bottom of the import graph.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["TomlTables", "read_tables", "table_of"]

T = TypeVar("T")


def _header_re(name: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*\[\[\s*{re.escape(name)}\s*\]\]")


def _line_of_key(text: str, key: str) -> int | None:
    """The line that starts the top-level ``key``: ``key =`` (or ``key.x =``) before the first table
    header, or a ``[key]`` / ``[[key]]`` / ``[key.x]`` header anywhere."""
    quoted = rf"\s*[\"']?{re.escape(key)}[\"']?\s*"
    assignment, header = re.compile(rf"^{quoted}[=.]"), re.compile(rf"^\s*\[\[?{quoted}[\].]")
    in_tables = False
    for n, line in enumerate(text.splitlines(), 1):
        if header.match(line) or (not in_tables and assignment.match(line)):
            return n
        in_tables = in_tables or line.lstrip().startswith("[")
    return None


def _at(path: Path, text: str, key: str) -> str:
    line = _line_of_key(text, key)
    return f"{path} line {line}" if line else str(path)


@dataclass(frozen=True, slots=True)
class TomlTables:
    """The ``[[name]]`` tables of one file, as parsed, with each table's header line."""

    path: Path
    name: str
    tables: tuple[Any, ...]
    lines: tuple[int, ...]
    """Header line of each table, in order (shorter than ``tables`` only for inline arrays)."""

    def where(self, index: int) -> str:
        """``<path> line <n>`` for table ``index``, or ``<path> [[name]] #<index + 1>`` without a header line."""
        if index < len(self.lines):
            return f"{self.path} line {self.lines[index]}"
        return f"{self.path} [[{self.name}]] #{index + 1}"

    def parse(self, parse: Callable[[Any], T]) -> Iterator[tuple[str, T]]:
        """``(where, parse(table))`` for each table; a ``ValueError`` from ``parse`` gets ``where`` in front.

        Raises:
            ValueError: ``<path> line <n>: <parse's message>``.
        """
        for index, raw in enumerate(self.tables):
            where = self.where(index)
            try:
                value = parse(raw)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            yield where, value


def read_tables(value: str, name: str) -> TomlTables | None:
    """Read the file ``value`` names, which must hold only ``[[name]]`` tables (``None`` for an empty value).

    Raises:
        ValueError: the file cannot be read, is not UTF-8 or not TOML (with the parser's line and
            column), or holds anything but ``[[name]]`` tables (naming the key and its line).
    """
    value = value.strip()
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{path} is not UTF-8 text (line {line})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None
    extra = sorted(set(data) - {name})
    if extra:
        raise ValueError(f"{_at(path, text, extra[0])}: unknown top-level key {extra[0]!r} (expected [[{name}]])")
    tables = data.get(name)
    if not isinstance(tables, list):
        where = _at(path, text, name) if name in data else str(path)
        raise ValueError(f"{where}: expected [[{name}]] tables")  # noqa: TRY004 - casts raise ValueError
    header = _header_re(name)
    lines = tuple(n for n, line in enumerate(text.splitlines(), 1) if header.match(line))
    return TomlTables(path, name, tuple(tables), lines)


def table_of(raw: Any, name: str, known: frozenset[str]) -> dict[str, Any]:
    """``raw`` as one ``[[name]]`` table whose keys are all ``known``.

    Raises:
        ValueError: not a table, or an unknown key (named, with the known ones).
    """
    if not isinstance(raw, dict):
        raise ValueError(f"each [[{name}]] entry must be a table")  # noqa: TRY004 - casts raise ValueError
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return raw
