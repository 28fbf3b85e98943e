"""Property-based fuzzing of the HTTP endpoint (``/mcp``) in both protocol eras.

The real server (``ImageService`` + ``build_mcp_server``, ``local`` provider, a bearer token,
a small ``MCP_MAX_BODY_BYTES``) runs in-process on 127.0.0.1; every case is sent as raw bytes
over a fresh TCP connection, so nothing the fuzzer draws is normalised away. Properties, for
every case: an answer (or, only for a body the client cut short, a closed connection) within
a bound; never a 5xx; no stack trace, exception name or server path in the body; nothing logged
at ERROR by the server; and afterwards both eras still answer (``tools/list`` per request,
``ping`` in a handshake-era session the fuzzer never touches).

Bodies: truncated, deeply nested, huge (around and over the limit), wrong types, batches,
unknown methods, bad ids, responses and notifications, odd framing (chunked, short or long
Content-Length). Headers: every MCP header dropped, replaced, duplicated, oversized or non-ASCII.

``FUZZ_CASES`` sets the examples per fuzz target (default 200; three targets). The counts are
printed for the README's "Reliability and security" figures.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .support import (
    ACCEPT_BOTH,
    LEGACY_VERSION,
    MODERN_VERSION,
    Header,
    RawConnection,
    Served,
    build_request,
    leaks,
    legacy_call,
    legacy_headers,
    modern_call,
    modern_headers,
    modern_meta,
    open_session,
    reply_of,
    serve,
)

pytestmark = pytest.mark.timeout(240)

CASES = int(os.environ.get("FUZZ_CASES", "200"))
"""Examples per fuzz target (bodies in each era, headers across both)."""
BOUND = 10.0
"""Seconds a case may take from connect to the end of the answer."""
TOKEN = "fuzz-token-8d1c"
BODY_LIMIT = 64 * 1024
OWNER = hashlib.sha256(TOKEN.encode()).digest()

# ---- strategies --------------------------------------------------------------------------------

METHODS = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "server/discover",
    "subscriptions/listen",
    "tasks/get",
    "tasks/list",
    "tasks/cancel",
    "tasks/result",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "roots/list",
    "sampling/createMessage",
    "elicitation/create",
]
TOOLS = [
    "get_generation",
    "list_generations",
    "cancel_generation",
    "get_image_data",
    "reload_config",
    "generate_image",
    "nope",
    "",
    "GENERATE_IMAGE",
    "generate_image\u0000",
]
URIS = [
    "providers://list",
    "styles://list",
    "images://" + "0" * 32,
    "images://../../etc/passwd",
    "styles://provider/local",
    "styles://provider/..%2f",
    "file:///etc/passwd",
    "",
    "\u202e",
]

leaves = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=24)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
ids = (
    st.integers(-(2**63), 2**63)
    | st.integers()
    | st.text(max_size=12)
    | st.none()
    | st.booleans()
    | st.floats()
    | st.lists(st.integers(), max_size=2)
    | st.just({"a": 1})
)
methods = st.sampled_from(METHODS) | st.text(max_size=24) | json_values
generate_arguments = st.fixed_dictionaries(
    # Always a resolution, mostly a tiny one: a valid call renders, and renders cheaply.
    {"resolution": st.sampled_from(["64x64", "64x64", "64x64", "0x0", "99999x99999", "local:64x64"]) | json_values},
    optional={
        "prompt": st.text(max_size=40) | json_values,
        "provider": st.sampled_from(["local", "nope", "LOCAL"]) | json_values,
        "n": st.integers(-3, 6) | json_values,
        "wait_seconds": st.sampled_from([0, -1, 1e308]) | json_values,
        "file_prefix": st.sampled_from(["../x", "a/b", "CON", "\u0000"]) | st.text(max_size=10),
        "inline": st.sampled_from(["none", "full", "thumbnail", "bogus"]),
        "job_id": st.text(max_size=40) | json_values,
        "image_id": st.sampled_from(["0" * 32, "../x"]) | json_values,
    },
)
params = (
    st.none()
    | json_values
    | st.fixed_dictionaries(
        {},
        optional={
            "name": st.sampled_from(TOOLS) | st.sampled_from(["image_generation_prompt", "nope"]) | json_values,
            "arguments": generate_arguments | json_values,
            "uri": st.sampled_from(URIS) | json_values,
            "cursor": json_values,
            "_meta": st.just(modern_meta())
            | json_values
            | st.just({**modern_meta(), "io.modelcontextprotocol/protocolVersion": "1999-01-01"}),
            "protocolVersion": st.sampled_from([LEGACY_VERSION, MODERN_VERSION, "2024-11-05", "x"]) | json_values,
            "capabilities": json_values,
            "clientInfo": json_values,
            "level": st.sampled_from(["debug", "emergency", "nope"]) | json_values,
            "requestId": ids,
            "progressToken": ids,
            "progress": json_values,
            "taskId": json_values,
            "ref": json_values,
            "argument": json_values,
        },
    )
)
messages = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "2.0", "1.0", "", 2.0]) | json_values},
    optional={
        "id": ids,
        "method": methods,
        "params": params,
        "result": json_values,
        "error": st.fixed_dictionaries({"code": st.integers(), "message": st.text(max_size=10)}) | json_values,
    },
)
requests_ = st.fixed_dictionaries(
    {
        "jsonrpc": st.just("2.0"),
        "id": st.integers(0, 2**31) | st.text(max_size=8),
        "method": st.sampled_from(METHODS),
        "params": params,
    },
)

tool_calls = st.builds(
    lambda name, arguments, rid: {
        "jsonrpc": "2.0",
        "id": rid,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    },
    st.sampled_from(TOOLS),
    generate_arguments | json_values,
    st.integers(0, 2**31),
)
well_formed = requests_ | tool_calls
"""Requests that get past framing and routing, so the fuzzer reaches the SDK and the tools."""


def _dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _padded(size: int) -> bytes:
    """A valid ``ping`` of exactly ``size`` bytes (the padding sits in an unused param)."""
    head, tail = b'{"jsonrpc":"2.0","id":"big","method":"ping","params":{"pad":"', b'"}}'
    return head + b"a" * max(0, size - len(head) - len(tail)) + tail


bodies = st.one_of(
    messages.map(_dump),
    requests_.map(_dump),
    st.lists(messages | requests_, max_size=5).map(_dump),  # batches (none are served on this wire)
    st.builds(lambda m, cut: _dump(m)[:cut], messages | requests_, st.integers(0, 200)),  # truncated JSON
    st.builds(lambda d: b"[" * d + b"]" * d, st.integers(1, 20_000)),  # deeply nested
    st.builds(
        lambda d: b'{"jsonrpc":"2.0","id":1,"method":"ping","params":' + b'{"a":' * d + b"1" + b"}" * d + b"}",
        st.integers(1, 5_000),
    ),
    st.builds(lambda n: b'{"jsonrpc":"2.0","id":' + b"9" * n + b',"method":"ping"}', st.integers(15, 6000)),
    st.builds(_padded, st.integers(BODY_LIMIT - 64, BODY_LIMIT + 64) | st.integers(0, 4 * BODY_LIMIT)),
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b"{}",
            b'"x"',
            b"\xef\xbb\xbf{}",
            b"\xff\xfe{\x00}\x00",
            b'{"jsonrpc":"2.0","id":1,"method":"\xff\xfe"}',
            b'{"jsonrpc":"2.0","id":1,"method":"ping"}' * 2,
            b'{"jsonrpc":"2.0","id":1,"method":"ping","id":2}',
            b"NaN",
            b'{"id":Infinity}',
        ]
    ),
)

# Header values: valid ones, garbage, oversized, non-ASCII (valid and invalid UTF-8), controls.
garbage = st.sampled_from(["", " ", "x", "null", "2.0", "../..", "*/*", "\t", "a,b", "=?utf-8?b?w6k=?="]) | st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40
)
non_ascii = st.sampled_from(
    [
        b"\xe9",
        b"\xff\xfe",
        b"Bearer \xe9",
        b"Bearer \xc3",
        b"\xc3\xa9t\xc3\xa9",
        b"\xe2\x80\xae",
        b"a\x00b",
        b"\x7f",
        b"\x01",
    ]
)
"""Invalid UTF-8 first (the likeliest draws), then valid UTF-8, then bytes the parser refuses."""
oversized = st.sampled_from(["x" * 4096, "x" * 9000, "y" * 70_000])

MCP_HEADERS = {
    "Mcp-Session-Id": ["SESSION", "0" * 32, "f" * 32],
    "MCP-Protocol-Version": [LEGACY_VERSION, MODERN_VERSION, "2024-11-05", "2025-03-26", "DRAFT-2026-v1"],
    "Mcp-Method": ["tools/call", "ping", "tools/list", "initialize"],
    "Mcp-Name": ["list_generations", "generate_image", "providers://list", "=?base64?bGlzdA==?="],
    "Mcp-Param-City": ["Paris", "=?base64?UGFyaXM=?=", "=?base64?###?="],
    "Accept": [ACCEPT_BOTH, "application/json", "text/event-stream", "*/*", "text/*", "image/png", ""],
    "Content-Type": [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "multipart/form-data",
        "application/x-www-form-urlencoded",
    ],
    "Authorization": [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x"],
    "X-API-Key": [TOKEN, "nope"],
    "Origin": ["http://localhost:3000", "http://127.0.0.1", "https://evil.example", "null", "file://"],
    "Host": ["HOST", "evil.example", "127.0.0.1.evil.example", "[::1]", "localhost:1"],
    "Last-Event-ID": ["0", "-1", "999999999999999999999", "session:1"],
}
PARAM_NAMES = st.sampled_from(
    ["Mcp-Param-City", "Mcp-Param-Prompt", "mcp-param-", "Mcp-Param-" + "X" * 200, "Mcp-Param-\u00e9"]
) | st.text(alphabet="abcXYZ-_", min_size=1, max_size=12).map(lambda s: "Mcp-Param-" + s)


@dataclass(frozen=True)
class Mutation:
    """One change to an otherwise valid request's headers."""

    header: str
    op: str
    """``drop``, ``set`` (replace the value) or ``dup`` (add a second copy)."""
    value: str | bytes = ""


def _pick(*choices: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One of ``choices``, none favoured by flattening (``a | b`` merges nested unions)."""
    return st.sampled_from(choices).flatmap(lambda chosen: chosen)


def _plan(header: str, valid: list[str]) -> st.SearchStrategy[Mutation | None]:
    """What happens to ``header``: mostly nothing (hypothesis favours the first option), so each
    case changes a few headers and the rest of the request stays valid enough to go deep."""
    values = _pick(st.sampled_from(valid), non_ascii, garbage, non_ascii, oversized)
    changed = st.builds(Mutation, st.just(header), st.sampled_from(["set", "drop", "dup"]), values)
    return st.sampled_from([False, False, False, False, True]).flatmap(lambda change: changed if change else st.none())


header_cases = st.fixed_dictionaries(
    {
        "era": st.sampled_from(["legacy", "modern"]),
        "http_method": st.sampled_from(["POST"] * 6 + ["GET", "DELETE", "PUT", "OPTIONS", "HEAD"]),
        "request": requests_ | tool_calls,
        "mutations": st.tuples(
            *(_plan(name, valid) for name, valid in MCP_HEADERS.items()),
            st.lists(st.builds(Mutation, PARAM_NAMES, st.just("dup"), garbage | non_ascii), max_size=2),
        ).map(lambda plans: [m for m in (*plans[:-1], *plans[-1]) if m is not None]),
        "framing": st.sampled_from(["length"] * 8 + ["chunked", "short", "long"]),
    }
)

# ---- the harness ---------------------------------------------------------------------------------


@dataclass
class Harness:
    served: Served
    fuzz_session: str = ""
    """A session the fuzzer may use, break or DELETE (reopened when gone)."""
    probe_session: str = ""
    """A session the fuzzer never sees: it must keep working throughout."""
    statuses: collections.Counter[int | None] = field(default_factory=collections.Counter)
    cases: int = 0

    @property
    def port(self) -> int:
        return self.served.port

    async def start(self) -> None:
        self.fuzz_session = await open_session(self.port, TOKEN)
        self.probe_session = await open_session(self.port, TOKEN)

    async def exchange(self, data: bytes, *, method: str, half_close: bool = False) -> None:
        """Send ``data`` and check the answer against the properties."""
        self.cases += 1
        async with asyncio.timeout(BOUND):
            conn = await RawConnection.open(self.port)
            try:
                try:
                    await conn.send(data)
                    if half_close:
                        conn.writer.write_eof()
                except ConnectionResetError:
                    pass  # the server refused the head and closed before the body went out
                resp = await conn.read_head()
                self.statuses[resp.status] += 1
                if resp.status is None:
                    assert half_close, "the server closed the connection without an answer"
                    return
                streaming = resp.headers.get("Content-Type", "").startswith("text/event-stream")
                if method == "GET" and streaming:
                    return  # a standalone stream stays open; its head was enough
                try:
                    body = await conn.read_body(resp, method=method, until=b"\n\n" if streaming else None)
                except (asyncio.IncompleteReadError, ConnectionResetError):
                    body = b""
            finally:
                await conn.close()
        assert resp.status < 500, (resp.status, body[:300], data[:300])
        found = leaks(body, self.served.save_dir, Path(__file__).parents[2])
        assert not found, (found, body[:500])

    async def still_serving(self) -> None:
        """Both eras answer, the untouched session works, the fuzz session is reopened if gone."""
        async with asyncio.timeout(BOUND):
            # 2026-07-28 has no ping: tools/list is its cheapest request.
            modern = await modern_call(self.port, "tools/list", token=TOKEN, rid="after")
            assert modern.status == 200 and "result" in reply_of(modern, "after"), modern.text
            legacy = await legacy_call(self.port, self.probe_session, "ping", token=TOKEN, rid="after")
            assert legacy.status == 200 and "result" in reply_of(legacy, "after"), legacy.text
            if self.served.manager.get(self.fuzz_session, OWNER) is None:
                self.fuzz_session = await open_session(self.port, TOKEN)

    def report(self, name: str) -> str:
        shown = ", ".join(
            f"{k if k is not None else 'closed'}: {v}"
            for k, v in sorted(self.statuses.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
        )
        return f"\nHTTP fuzz [{name}]: {self.cases} cases; statuses {shown}"

    async def final_check(self) -> None:
        """After the whole run: ``tools/list`` in both eras still lists the real tools."""
        async with asyncio.timeout(BOUND):
            replies = [
                await modern_call(self.port, "tools/list", token=TOKEN, rid="final"),
                await legacy_call(self.port, self.probe_session, "tools/list", token=TOKEN, rid="final"),
            ]
        for resp in replies:
            tools = {t["name"] for t in reply_of(resp, "final")["result"]["tools"]}
            assert {"generate_image", "get_image_data", "list_generations"} <= tools


class ErrorLog(logging.Handler):
    """What the server logs at ERROR. An unhandled exception is a finding even when the client
    saw a clean status: once a stream is under way, a failure can no longer become a 500."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("mcp_image_server", "mcp.")):
            self.records.append(self.format(record))


def _run_fuzz(tmp_path: Path, name: str, strategy: st.SearchStrategy[Any], case: Any) -> None:
    """Serve, then run ``CASES`` examples of ``strategy``, each sent by ``case(harness, example)``.

    The test is synchronous and drives its own event loop (``asyncio.Runner``): hypothesis runs
    each example as a plain call, and the server keeps running in that loop between examples.
    """
    env = {"MCP_AUTH_TOKEN": TOKEN, "MCP_MAX_BODY_BYTES": str(BODY_LIMIT), "MCP_MAX_SESSIONS": "10000"}
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    try:
        with asyncio.Runner() as runner:
            server = serve(tmp_path, env)
            harness = Harness(runner.run(server.__aenter__()))
            try:
                runner.run(harness.start())

                @settings(max_examples=CASES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
                @given(example=strategy)
                def one(example: Any) -> None:
                    errors.records.clear()  # so a finding is pinned on the example that caused it
                    runner.run(case(harness, example))
                    runner.run(harness.still_serving())
                    assert not errors.records, errors.records

                one()
                runner.run(harness.final_check())
            finally:
                runner.run(server.__aexit__(None, None, None))
    finally:
        logging.getLogger().removeHandler(errors)
    print(harness.report(name))
    assert harness.cases >= CASES


# ---- targets ---------------------------------------------------------------------------------------


def _legacy_body_case(harness: Harness, case: tuple[bytes, bool, str]) -> Any:
    body, with_session, framing = case
    headers: list[tuple[str, str]] = list(legacy_headers(harness.fuzz_session if with_session else None).items())
    headers.append(("Authorization", f"Bearer {TOKEN}"))
    return _send(harness, "POST", headers, body, framing)


def _modern_headers_for(body: bytes) -> list[tuple[str, str]]:
    """Routing headers that agree with the body when it has them (so cases get past the ladder)."""
    method, name = "ping", None
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        decoded = None
    if isinstance(decoded, dict):
        if isinstance(decoded.get("method"), str) and decoded["method"].isascii() and decoded["method"].isprintable():
            method = decoded["method"]
        p = decoded.get("params")
        if isinstance(p, dict):
            value = p.get("uri" if method == "resources/read" else "name")
            if isinstance(value, str) and value.isascii() and value.isprintable():
                name = value
    headers = list(modern_headers(method, name).items())
    headers.append(("Authorization", f"Bearer {TOKEN}"))
    return headers


def _with_meta(message: dict[str, Any], meta: bool) -> bytes:
    if meta:
        p = message.get("params")
        message = {**message, "params": {**(p if isinstance(p, dict) else {}), "_meta": modern_meta()}}
    return _dump(message)


def _modern_body_case(harness: Harness, case: tuple[bytes, str]) -> Any:
    body, framing = case
    return _send(harness, "POST", _modern_headers_for(body), body, framing)


def _send(harness: Harness, method: str, headers: Sequence[Header], body: bytes, framing: str) -> Any:
    data = build_request(method, "/mcp", headers, body, host=f"127.0.0.1:{harness.port}", **_framing(framing, body))
    return harness.exchange(data, method=method, half_close=framing == "long")


def _header_case(harness: Harness, case: dict[str, Any]) -> Any:
    request = dict(case["request"])
    if case["era"] == "modern":
        body = _with_meta(request, True)
        base: dict[str, str | bytes] = dict(_modern_headers_for(body))
    else:
        body = _dump(request)
        base = {**legacy_headers(harness.fuzz_session), "Authorization": f"Bearer {TOKEN}"}
    base["Host"] = f"127.0.0.1:{harness.port}"
    headers: list[tuple[str | bytes, str | bytes]] = list(base.items())
    for m in case["mutations"]:
        value = (
            {"SESSION": harness.fuzz_session, "HOST": f"127.0.0.1:{harness.port}"}.get(m.value, m.value)
            if isinstance(m.value, str)
            else m.value
        )
        if m.op in ("drop", "set"):
            headers = [(n, v) for n, v in headers if _lower(n) != m.header.lower()]
        if m.op in ("set", "dup"):
            headers.append((m.header, value))
    method = case["http_method"]
    data = build_request(
        method, "/mcp", headers, b"" if method == "GET" else body, host=None, **_framing(case["framing"], body)
    )
    return harness.exchange(data, method=method, half_close=case["framing"] == "long")


def _lower(name: str | bytes) -> str:
    return (name.decode("latin-1") if isinstance(name, bytes) else name).lower()


def _framing(name: str, body: bytes) -> dict[str, Any]:
    """``chunked``; ``short``: declares less than it sends (the rest reads as a next request);
    ``long``: declares more, then stops sending (the client half-closes)."""
    if name == "chunked":
        return {"chunked": True}
    if name == "short":
        return {"content_length": len(body) // 2}
    if name == "long":
        return {"content_length": len(body) + 10}
    return {}


framings = st.sampled_from(["length"] * 8 + ["chunked", "short", "long"])


def test_fuzz_bodies_handshake_era(tmp_path: Path) -> None:
    legacy_bodies = _pick(bodies, well_formed.map(_dump))
    _run_fuzz(
        tmp_path, "bodies, 2025-11-25 session", st.tuples(legacy_bodies, st.booleans(), framings), _legacy_body_case
    )


def test_fuzz_bodies_per_request_era(tmp_path: Path) -> None:
    modern_bodies = _pick(
        bodies,
        st.builds(_with_meta, well_formed, st.just(True)),
        st.builds(_with_meta, well_formed | messages, st.booleans()),
    )
    _run_fuzz(tmp_path, "bodies, 2026-07-28", st.tuples(modern_bodies, framings), _modern_body_case)


def test_fuzz_headers_both_eras(tmp_path: Path) -> None:
    _run_fuzz(tmp_path, "headers, both eras", header_cases, _header_case)


# ---- what the fuzzer found, pinned -------------------------------------------------------------------


@pytest.mark.parametrize("params", [{"name": "nope"}, {"name": "image_generation_prompt"}], ids=["unknown", "no-args"])
async def test_prompts_get_with_an_unknown_name_or_missing_arguments_is_invalid_params(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, params: dict[str, Any]
) -> None:
    """Found by the header fuzzer at 2,500 cases: the SDK answers these with a bare ValueError,
    which became JSON-RPC code 0 in a session, -32603 "Internal server error" per request, and
    an ERROR traceback in the log. It is the client's mistake: -32602 with the prompts we have."""
    async with serve(tmp_path) as served:
        session = await open_session(served.port)
        with caplog.at_level(logging.ERROR):
            replies = [
                await legacy_call(served.port, session, "prompts/get", params),
                await modern_call(served.port, "prompts/get", params, name=params["name"]),
            ]
        for resp in replies:
            error = reply_of(resp)["error"]
            assert error["code"] == -32602, error
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
