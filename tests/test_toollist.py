"""The ``tools/list`` reply: lean schemas that judge every instance as the full ones do, served
from a cache that still leaves the handshake gate and each era's shape to the SDK."""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from mcp_image_server.config import load_settings
from mcp_image_server.server import build_mcp_server
from mcp_image_server.service import ImageService
from mcp_image_server.toollist import lean

from .conftest import server_env

LEGACY = "2025-11-25"
REPLY_BUDGET = 20_000
"""Bytes of the whole tools/list reply (26.7 KB before lean schemas)."""


def _tools(tmp: Path) -> list[Any]:
    settings = load_settings({"MCP_IMAGE_SAVE_DIR": str(tmp)})
    return list(build_mcp_server(ImageService(settings))._tool_manager.list_tools())


_TOOLS = _tools(Path(__import__("tempfile").mkdtemp(prefix="toollist-")))


def _full_schemas() -> list[tuple[str, dict[str, Any]]]:
    """Each tool's schemas as pydantic writes them (the tool itself now publishes the lean ones)."""
    out = []
    for tool in _TOOLS:
        out.append((f"{tool.name}.input", tool.fn_metadata.arg_model.model_json_schema(by_alias=True)))
        if tool.fn_metadata.output_schema is not None:
            out.append((f"{tool.name}.output", tool.fn_metadata.output_schema))
    return out


FULL = _full_schemas()

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**33) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _near(schema: Any, defs: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values on both sides of ``schema``'s edges: its enum members, its bounds and one past
    them, nulls, wrong types, and objects with some properties missing or extra."""
    if not isinstance(schema, dict) or depth > 4:
        return _JSON
    if "$ref" in schema:
        return _near(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, depth + 1)
    options: list[st.SearchStrategy[Any]] = [_JSON]
    for key in ("anyOf", "oneOf", "allOf"):
        options += [_near(s, defs, depth + 1) for s in schema.get(key, [])]
    if "enum" in schema:
        options.append(st.sampled_from([*schema["enum"], None, "not-a-member"]))
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    if "string" in types:
        lo, hi = schema.get("minLength", 0), schema.get("maxLength", 8)
        options.append(st.sampled_from(sorted({max(0, lo - 1), lo, hi, hi + 1}))
                       .map(lambda n: "a" * n))
    if "integer" in types or "number" in types:
        lo, hi = schema.get("minimum", -2), schema.get("maximum", 10)
        options.append(st.sampled_from([lo - 1, lo, hi, hi + 1]))
    if "array" in types:
        options.append(st.lists(_near(schema.get("items", {}), defs, depth + 1), max_size=2))
    if "object" in types or "properties" in schema:
        props = schema.get("properties", {})
        options.append(
            st.fixed_dictionaries({}, optional={
                **{name: _near(sub, defs, depth + 1) for name, sub in props.items()},
                "unexpected": _JSON,
            })
        )
    return st.one_of(options)


def _parts(schema: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """``schema`` and every property schema inside it (refs followed once), each judged alone."""
    parts = [schema]
    for sub in schema.get("properties", {}).values():
        parts += _parts(sub, defs)
    for sub in schema.get("anyOf", []):
        if "$ref" in sub:
            parts += _parts(defs[sub["$ref"].rsplit("/", 1)[-1]], defs)
    if isinstance(schema.get("items"), dict) and "$ref" in schema["items"]:
        parts += _parts(defs[schema["items"]["$ref"].rsplit("/", 1)[-1]], defs)
    return parts


@functools.cache
def _judges(name: str) -> list[tuple[dict[str, Any], Draft202012Validator, Draft202012Validator]]:
    full = dict(FULL)[name]
    defs = full.get("$defs", {})
    judged = []
    for part in _parts(full, defs):
        whole = {**part, "$defs": defs} if defs else part
        judged.append((part, Draft202012Validator(lean(whole)), Draft202012Validator(whole)))
    return judged


@pytest.mark.parametrize("name", [name for name, _ in FULL])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_lean_schema_judges_every_instance_as_the_full_one(name: str, data: Any) -> None:
    judges = _judges(name)
    part, slim, whole = judges[data.draw(st.integers(0, len(judges) - 1))]
    instance = data.draw(_near(part, dict(FULL)[name].get("$defs", {})))
    assert slim.is_valid(instance) == whole.is_valid(instance), (name, part, instance)


def _keywords(schema: Any, found: set[str]) -> set[str]:
    """Every keyword used at schema level (property names are not keywords)."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            found.add(key)
            if key in ("properties", "$defs"):
                for sub in value.values():
                    _keywords(sub, found)
            else:
                _keywords(value, found)
    elif isinstance(schema, list):
        for item in schema:
            _keywords(item, found)
    return found


def test_published_schemas_carry_no_titles_and_are_valid_json_schema() -> None:
    for tool in _TOOLS:
        for schema in (tool.parameters, tool.output_schema):
            if schema is None:
                continue
            Draft202012Validator.check_schema(schema)
            assert "title" not in _keywords(schema, set()), tool.name
            assert "anyOf" not in json.dumps(schema) or "$ref" in json.dumps(schema), tool.name


class _Lines:
    """Raw JSON-RPC lines to a stdio server: the client side of the wire, nothing more."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def ask(self, rid: int, method: str, params: dict[str, Any] | None = None) -> tuple[dict[str, Any], int]:
        assert self.proc.stdin and self.proc.stdout
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        await self.proc.stdin.drain()
        async with asyncio.timeout(20):
            while True:
                line = await self.proc.stdout.readline()
                assert line, "the server closed stdout"
                reply = json.loads(line)
                if reply.get("id") == rid:
                    return reply, len(line)

    async def tell(self, method: str) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": method}).encode() + b"\n")
        await self.proc.stdin.drain()


async def test_cached_list_keeps_the_handshake_gate_and_the_legacy_task_flag(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mcp_image_server", cwd=tmp_path, env=server_env(tmp_path / "images"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    wire = _Lines(proc)
    try:
        early, _ = await wire.ask(1, "tools/list")
        assert early["error"]["code"] == -32602  # the SDK's pre-initialize refusal
        init, _ = await wire.ask(2, "initialize", {
            "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})
        assert init["result"]["protocolVersion"] == LEGACY
        await wire.tell("notifications/initialized")
        first, size = await wire.ask(3, "tools/list")
        again, _ = await wire.ask(4, "tools/list", {})
        paged, _ = await wire.ask(5, "tools/list", {"cursor": 7})
    finally:
        assert proc.stdin
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), 10)
    assert first["result"] == again["result"]
    tools = {t["name"]: t for t in first["result"]["tools"]}
    assert tools["generate_image"]["execution"] == {"taskSupport": "optional"}
    assert tools["generate_image"]["inputSchema"]["properties"]["n"] == {
        "default": 1, "description": "Number of images.", "maximum": 4, "minimum": 1, "type": "integer"}
    assert size <= REPLY_BUDGET, size
    assert "error" in paged  # odd params still reach the SDK's own validation


async def test_modern_client_gets_lean_tools_and_validates_outputs_against_them(stdio_client: Any) -> None:
    async with stdio_client() as client:
        assert client.protocol_version != LEGACY
        listed = [t.model_dump(by_alias=True, exclude_none=True) for t in (await client.list_tools()).tools]
        assert listed == [t.model_dump(by_alias=True, exclude_none=True) for t in (await client.list_tools()).tools]
        assert all("execution" not in t for t in listed)
        result = await client.call_tool("generate_image", {"prompt": "a red boat", "resolution": "256x256"})
        assert not result.is_error and result.structured_content and result.structured_content["ok"]
        failed = await client.call_tool("get_generation", {"job_id": "no-such-job"})
        assert failed.is_error and failed.structured_content["error"]["code"]
