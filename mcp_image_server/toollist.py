"""The ``tools/list`` reply: built once per protocol version, with schemas stated once.

Our tools never change after ``build_mcp_server``, yet the SDK rebuilds, re-validates and
re-serialises the whole list on every request: most of a ``tools/list``'s CPU. ``ToolListCache``
keeps the wire dict the SDK's own chain produced for a given (protocol version, params) and
serves it again, so the SDK still does all validation and shaping, once. ``lean`` removes what
pydantic's schemas repeat (titles that restate the property name, ``default: null``, ``anyOf``
with ``null``) without changing which instances a schema accepts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

__all__ = ["ToolListCache", "lean"]

_MAX_ENTRIES: Final = 64
"""Distinct (version, params) pairs kept; params differ only by client, so a few are plenty."""


class ToolListCache:
    """Server middleware serving ``tools/list`` from the first answer the chain gave for the
    same protocol version and params. Outermost of ours, so what it keeps already carries
    every later middleware's touches (the 2025-11-25 task support flag)."""

    def __init__(self) -> None:
        self._replies: dict[tuple[str, str], dict[str, Any]] = {}

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/list" or ctx.request_id is None:
            return await call_next(ctx)
        try:
            key = (ctx.protocol_version, json.dumps(ctx.params, sort_keys=True, separators=(",", ":")))
        except (TypeError, ValueError):
            return await call_next(ctx)
        # The handshake gate is the SDK's: before initialize the chain must run to refuse.
        cached = self._replies.get(key) if ctx.session._connection.initialize_accepted else None
        if cached is not None:
            return dict(cached)
        result = await call_next(ctx)
        if isinstance(result, dict):
            if len(self._replies) >= _MAX_ENTRIES:
                self._replies.clear()
            self._replies[key] = result
            return dict(result)
        return result


# Keywords whose value is one subschema, a list of them, or a map of name -> subschema.
_ONE: Final = frozenset({
    "items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
    "unevaluatedProperties", "unevaluatedItems", "additionalItems",
})
_LIST: Final = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_MAP: Final = frozenset({"properties", "$defs", "definitions", "patternProperties", "dependentSchemas"})
_MERGE_BLOCKERS: Final = frozenset({"$ref", "anyOf", "oneOf", "allOf", "not", "if", "const"})


def lean(schema: Any) -> Any:
    """``schema`` without annotations a model does not need, accepting exactly the same instances."""
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" or (key == "default" and value is None):
            continue
        if key in _ONE:
            out[key] = [lean(v) for v in value] if isinstance(value, list) else lean(value)
        elif key in _LIST and isinstance(value, list):
            out[key] = [lean(v) for v in value]
        elif key in _MAP and isinstance(value, Mapping):
            out[key] = {name: lean(v) for name, v in value.items()}
        else:
            out[key] = value
    return _nullable(out)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``{"anyOf": [{"type": T, ...}, {"type": "null"}]}`` as ``{"type": [T, "null"], ...}``."""
    options = schema.get("anyOf")
    if not isinstance(options, list) or len(options) != 2 or {"type": "null"} not in options:
        return schema
    other = options[0] if options[1] == {"type": "null"} else options[1]
    if not isinstance(other, dict) or not isinstance(other.get("type"), str) or other["type"] == "null":
        return schema
    if _MERGE_BLOCKERS & other.keys() or _MERGE_BLOCKERS & (schema.keys() - {"anyOf"}):
        return schema
    if (other.keys() & schema.keys()) - {"anyOf"}:
        return schema  # a keyword on both levels would have to hold on both: keep them apart
    merged = {k: v for k, v in schema.items() if k != "anyOf"}
    merged.update(other)
    merged["type"] = [other["type"], "null"]
    if isinstance(other.get("enum"), list):
        merged["enum"] = [*other["enum"], None]
    return merged
