"""Hostile credentials, sessions, and Host/Origin combinations against the real server in-process.

Everything is sent as raw bytes (``support.raw_request``) so duplicated headers, odd spacing and
undecodable bytes reach the server as written.
"""

from __future__ import annotations

import ast
import base64
import inspect
import json
import logging
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mcp_image_server.transports import middleware, sessions

from .support import (
    INITIALIZE,
    Header,
    Served,
    auth,
    legacy_call,
    legacy_headers,
    modern_call,
    modern_headers,
    modern_request,
    open_session,
    post_json,
    raw_request,
    reply_of,
    serve,
)

pytestmark = pytest.mark.timeout(60)

ALPHA = "alpha-Tok3n-5f1e"
BETA = "beta-Tok3n-77aa"


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Served]:
    async with serve(tmp_path, {"MCP_AUTH_TOKEN": f"{ALPHA},{BETA}"}) as served:
        yield served


def _tools_list() -> bytes:
    return json.dumps(modern_request("tools/list", rid="auth")).encode()


async def _modern_with(served: Served, credentials: list[Header], target: str = "/mcp") -> Any:
    """A per-request ``tools/list`` carrying exactly ``credentials``."""
    headers: list[Header] = [*modern_headers("tools/list").items(), *credentials]
    return await raw_request(served.port, "POST", target, headers, _tools_list())


def _assert_refused(resp: Any, *secrets: str) -> None:
    assert resp.status == 401, (resp.status, resp.text)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer ")
    for secret in secrets:
        assert secret not in resp.text


# ---- schemes, case and spacing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        f"Bearer {ALPHA}",
        f"bearer {ALPHA}",
        f"BEARER {ALPHA}",
        f"BeArEr {ALPHA}",
        f"Bearer  {ALPHA}",
        f"Bearer {ALPHA}   ",
    ],
    ids=["canonical", "lower", "upper", "mixed", "two-spaces", "trailing-space"],
)
async def test_the_bearer_scheme_is_case_insensitive_and_spacing_tolerant(server: Served, value: str) -> None:
    """RFC 9110 §11.1: the auth scheme is case-insensitive; the token itself is not."""
    resp = await _modern_with(server, [("Authorization", value)])
    assert resp.status == 200, resp.text
    assert "result" in reply_of(resp, "auth")


@pytest.mark.parametrize(
    "value",
    [
        f"Basic {ALPHA}",
        "Basic " + base64.b64encode(f"user:{ALPHA}".encode()).decode(),
        f"Token {ALPHA}",
        f"Bearer{ALPHA}",
        f"Bearer\t{ALPHA}",
        "Bearer",
        "Bearer ",
        f"Bearer {ALPHA.upper()}",
        f"Bearer {ALPHA}x",
        f'Bearer "{ALPHA}"',
        f"Bearer {ALPHA} {ALPHA}",
        f"Bearer {ALPHA}, Bearer {BETA}",
        f"{ALPHA}",
        "",
    ],
    ids=[
        "basic",
        "basic-userpass",
        "token",
        "no-space",
        "tab",
        "bare",
        "bare-space",
        "token-case",
        "longer",
        "quoted",
        "twice-in-one",
        "comma-list",
        "no-scheme",
        "empty",
    ],
)
async def test_anything_but_a_bearer_token_is_refused(server: Served, value: str) -> None:
    resp = await _modern_with(server, [("Authorization", value)])
    _assert_refused(resp, ALPHA)


@pytest.mark.parametrize("name", ["X-API-Key", "x-api-key", "X-Api-Key"])
async def test_x_api_key_header_names_are_case_insensitive(server: Served, name: str) -> None:
    assert (await _modern_with(server, [(name, ALPHA)])).status == 200
    _assert_refused(await _modern_with(server, [(name, f"Bearer {ALPHA}")]), ALPHA)


# ---- duplicated credentials -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("credentials", "accepted"),
    [
        ([("Authorization", f"Bearer {ALPHA}"), ("Authorization", f"Bearer {ALPHA}")], True),
        ([("Authorization", f"Bearer {ALPHA}"), ("authorization", f"bearer {ALPHA}")], True),
        ([("Authorization", f"Bearer {ALPHA}"), ("Authorization", "Bearer wrong")], False),
        ([("Authorization", "Bearer wrong"), ("Authorization", f"Bearer {ALPHA}")], False),
        ([("Authorization", f"Bearer {ALPHA}"), ("Authorization", f"Bearer {BETA}")], False),
        ([("Authorization", f"Bearer {ALPHA}"), ("Authorization", f"Basic {ALPHA}")], False),
        ([("X-API-Key", ALPHA), ("X-API-Key", ALPHA)], True),
        ([("X-API-Key", ALPHA), ("X-API-Key", "wrong")], False),
        ([("X-API-Key", "wrong"), ("X-API-Key", ALPHA)], False),
        ([("Authorization", "Basic x"), ("X-API-Key", ALPHA)], False),
        ([("Authorization", "Bearer wrong"), ("X-API-Key", ALPHA)], False),
    ],
    ids=[
        "identical",
        "identical-case",
        "right-then-wrong",
        "wrong-then-right",
        "two-valid-tokens",
        "bearer-and-basic",
        "key-identical",
        "key-right-then-wrong",
        "key-wrong-then-right",
        "basic-plus-key",
        "wrong-bearer-plus-key",
    ],
)
async def test_duplicated_credentials_must_agree(server: Served, credentials: list[Header], accepted: bool) -> None:
    """Copies that disagree present no credential: a first-copy reader (us) and a last-copy reader
    (a proxy, the job-owner fingerprint) would otherwise act for different callers."""
    resp = await _modern_with(server, credentials)
    if accepted:
        assert resp.status == 200, resp.text
    else:
        _assert_refused(resp, ALPHA, BETA)


@pytest.mark.parametrize("tokens", ["", f"{ALPHA}"], ids=["no-token-loopback", "token"])
@pytest.mark.parametrize("name", ["Authorization", "X-API-Key"])
async def test_undecodable_credentials_are_a_clean_400_and_tools_keep_working(
    tmp_path: Path, tokens: str, name: str
) -> None:
    """Found by the header fuzzer: bytes that are not UTF-8 in a credential header were a 500
    (and on a server without tokens broke every tool that fingerprints the caller)."""
    value = b"Bearer \xe9\xff" if name == "Authorization" else b"\xe9\xff"
    async with serve(tmp_path, {"MCP_AUTH_TOKEN": tokens}) as served:
        call = {"name": "list_generations", "arguments": {}}
        body = json.dumps(modern_request("tools/call", call)).encode()
        headers: list[Header] = [*modern_headers("tools/call", "list_generations").items(), (name, value)]
        resp = await raw_request(served.port, "POST", "/mcp", headers, body)
        assert resp.status == 400 and resp.json()["error"]["message"].startswith("Bad Request"), resp.text
        token = tokens or None
        ok = await modern_call(served.port, "tools/call", call, token=token)
        assert reply_of(ok)["result"]["isError"] is False, ok.text


# ---- tokens anywhere but the headers ---------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["token", "access_token", "api_key", "apikey", "key", "auth", "bearer", "Authorization", "x-api-key"],
)
async def test_tokens_in_the_query_string_are_never_accepted(
    server: Served, query: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    target = f"/mcp?{query}={ALPHA}"
    _assert_refused(await _modern_with(server, [], target), ALPHA)
    legacy = await raw_request(
        server.port, "POST", target, list(legacy_headers().items()), json.dumps(INITIALIZE).encode()
    )
    _assert_refused(legacy, ALPHA)
    get = await raw_request(server.port, "GET", f"{target}&sessionId={'0' * 32}", [("Accept", "text/event-stream")])
    _assert_refused(get, ALPHA)
    # With a valid header the query is ignored, not a second credential.
    assert (await _modern_with(server, [("Authorization", f"Bearer {ALPHA}")], target)).status == 200
    assert ALPHA not in caplog.text
    assert len(server.manager) == 0


async def test_a_token_in_a_cookie_or_the_body_is_never_accepted(server: Served) -> None:
    _assert_refused(await _modern_with(server, [("Cookie", f"token={ALPHA}; access_token={ALPHA}")]), ALPHA)
    request = modern_request("tools/list", {"token": ALPHA, "_meta": {"authorization": f"Bearer {ALPHA}"}})
    resp = await post_json(server.port, request, modern_headers("tools/list"))
    _assert_refused(resp, ALPHA)


# ---- sessions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("chosen", ["attacker-chosen-session", "0" * 32, "a" * 32, "../../x", "1"])
async def test_a_session_id_chosen_by_the_client_is_never_adopted(server: Served, chosen: str) -> None:
    port = server.port
    headers = {**legacy_headers(), **auth(ALPHA), "Mcp-Session-Id": chosen}
    resp = await post_json(port, INITIALIZE, headers)
    assert resp.status == 404, resp.text  # initialize names no session; an unknown one is not created
    assert "Mcp-Session-Id" not in resp.headers and len(server.manager) == 0
    for method in ("GET", "DELETE"):
        h = {**legacy_headers(chosen), **auth(ALPHA), "Accept": "application/json, text/event-stream"}
        assert (await raw_request(port, method, "/mcp", list(h.items()))).status == 404
    assert (await legacy_call(port, chosen, "tools/list", token=ALPHA)).status == 404
    # Passing it in the query (the old SSE transport's way) does not pick it either.
    body = json.dumps(INITIALIZE).encode()
    for query in (f"sessionId={chosen}", f"session_id={chosen}", f"mcp-session-id={chosen}"):
        minted = await raw_request(
            port, "POST", f"/mcp?{query}", [*legacy_headers().items(), *auth(ALPHA).items()], body
        )
        assert minted.status == 200
        assert minted.headers["Mcp-Session-Id"] != chosen
    # The server mints its own: 128 random bits as 32 hex characters.
    minted_id = await open_session(port, ALPHA)
    assert minted_id != chosen and len(minted_id) == 32 and int(minted_id, 16) >= 0
    assert (await legacy_call(port, chosen, "ping", token=ALPHA)).status == 404


@pytest.mark.parametrize(
    ("name", "second"),
    [
        ("Mcp-Session-Id", "SAME"),
        ("Mcp-Session-Id", "0" * 32),
        ("MCP-Protocol-Version", "2025-11-25"),
        ("MCP-Protocol-Version", "2025-06-18"),
    ],
    ids=["session-same", "session-other", "version-same", "version-other"],
)
async def test_duplicated_session_routing_headers_are_refused(server: Served, name: str, second: str) -> None:
    """A session id or version given twice is ambiguous (first-copy and last-copy readers would
    disagree), so the handshake era refuses it, as the per-request era does its routing headers."""
    session = await open_session(server.port, ALPHA)
    value = session if second == "SAME" else second
    headers: list[Header] = [*legacy_headers(session).items(), *auth(ALPHA).items(), (name, value)]
    body = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "ping"}).encode()
    resp = await raw_request(server.port, "POST", "/mcp", headers, body)
    assert resp.status == 400 and "more than once" in resp.json()["error"]["message"], resp.text
    for method in ("GET", "DELETE"):
        assert (await raw_request(server.port, method, "/mcp", headers)).status == 400
    assert (await legacy_call(server.port, session, "ping", token=ALPHA)).status == 200


async def test_the_per_request_era_ignores_session_ids_and_never_mints_one(server: Served) -> None:
    headers = {**modern_headers("tools/list"), **auth(ALPHA), "Mcp-Session-Id": "attacker-chosen"}
    resp = await post_json(server.port, modern_request("tools/list"), headers)
    assert resp.status == 200 and "Mcp-Session-Id" not in resp.headers
    assert len(server.manager) == 0


async def test_another_tokens_session_is_404_for_every_method(server: Served) -> None:
    port = server.port
    mine = await open_session(port, ALPHA)
    hers = {**legacy_headers(mine), **auth(BETA)}
    assert (await legacy_call(port, mine, "tools/list", token=BETA)).status == 404
    note = {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}
    assert (await post_json(port, note, hers)).status == 404
    reply = {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert (await post_json(port, reply, hers)).status == 404
    get = await raw_request(port, "GET", "/mcp", [*hers.items(), ("Accept", "text/event-stream")])
    assert get.status == 404
    assert (await raw_request(port, "DELETE", "/mcp", list(hers.items()))).status == 404
    # Without any token it is 401 before the session is even looked up.
    _assert_refused(await legacy_call(port, mine, "tools/list"), ALPHA)
    # None of that ended or disturbed it.
    ok = await legacy_call(port, mine, "ping", token=ALPHA)
    assert ok.status == 200 and "result" in reply_of(ok)


# ---- DNS rebinding: Host and Origin on a loopback bind ----------------------------------------------


@pytest.mark.parametrize(
    ("host", "origin", "status"),
    [
        ("PORT", None, 200),
        ("localhost:PORT", "http://localhost:5173", 200),
        ("[::1]:PORT", "http://[::1]:8080", 200),
        ("[::1]", None, 200),
        ("LOCALHOST:PORT", "HTTP://LOCALHOST:3000", 200),
        ("127.0.0.1:1", None, 200),  # the port plays no part in rebinding: the name does
        ("evil.example", "http://localhost:3000", 421),  # foreign Host, loopback Origin
        ("evil.example:PORTNUM", None, 421),
        ("127.0.0.1.evil.example", None, 421),
        ("localhost.evil.example:PORTNUM", None, 421),
        ("127.0.0.1.nip.io", None, 421),
        ("localhost.", None, 421),
        ("evil.example@127.0.0.1", None, 421),
        ("127.0.0.1@evil.example", None, 421),
        ("127.0.0.2", None, 421),
        ("2130706433", None, 421),
        ("0x7f.0.0.1", None, 421),
        ("127.1", None, 421),
        ("[::ffff:127.0.0.1]", None, 421),
        ("::1", None, 421),  # unbracketed IPv6 is not a valid Host
        ("[::1", None, 421),
        ("PORT", "http://evil.example", 403),  # loopback Host, foreign Origin
        ("PORT", "http://127.0.0.1.evil.example", 403),
        ("PORT", "http://localhost.evil.example:3000", 403),
        ("PORT", "http://localhost@evil.example", 403),
        ("PORT", "http://evil.example#@localhost", 403),
        ("PORT", "null", 403),
        ("PORT", "file://", 403),
        ("PORT", "ws://localhost", 403),
        ("PORT", "http://localhost:3000/path", 403),
        ("PORT", "http://localhost:abc", 403),
        ("PORT", "http://[::ffff:7f00:1]", 403),
    ],
)
async def test_dns_rebinding_host_and_origin_combinations(
    server: Served, host: str, origin: str | None, status: int
) -> None:
    shown = host.replace("PORTNUM", str(server.port)).replace("PORT", str(server.port))
    if host == "PORT":
        shown = f"127.0.0.1:{server.port}"
    headers: list[Header] = [*modern_headers("tools/list").items(), *auth(ALPHA).items()]
    if origin is not None:
        headers.append(("Origin", origin))
    resp = await raw_request(server.port, "POST", "/mcp", headers, _tools_list(), host=shown)
    assert resp.status == status, (shown, origin, resp.status, resp.text)
    if status != 200:
        assert "Access-Control-Allow-Origin" not in resp.headers
    # A preflight from the same place gets the same verdict (before any token is asked for).
    if origin is not None:
        pre = await raw_request(
            server.port,
            "OPTIONS",
            "/mcp",
            [("Origin", origin), ("Access-Control-Request-Method", "POST")],
            host=shown,
        )
        assert pre.status == (204 if status == 200 else status), (shown, origin, pre.status)


async def test_a_public_bind_skips_the_host_check_but_still_checks_origins(tmp_path: Path) -> None:
    env = {"MCP_AUTH_TOKEN": ALPHA, "MCP_HOST": "0.0.0.0"}  # the policy of a public bind; the socket stays on loopback
    async with serve(tmp_path, env) as served:
        headers: list[Header] = [*modern_headers("tools/list").items(), *auth(ALPHA).items()]
        named = await raw_request(served.port, "POST", "/mcp", headers, _tools_list(), host="images.example.com")
        assert named.status == 200
        foreign = await raw_request(
            served.port,
            "POST",
            "/mcp",
            [*headers, ("Origin", "http://evil.example")],
            _tools_list(),
            host="images.example.com",
        )
        assert foreign.status == 403


# ---- constant-time comparison ------------------------------------------------------------------------


def _function_ast(func: Any) -> ast.AST:
    return ast.parse(textwrap.dedent(inspect.getsource(func)))


def _calls(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            names.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return names


def test_token_and_owner_checks_compare_in_constant_time() -> None:
    """Tokens are hashed to a fixed length and compared with ``compare_digest``, against every
    configured token with no early exit; session owners are compared the same way."""
    auth_tree = _function_ast(middleware.AccessPolicy.authenticate)
    assert "compare_digest" in _calls(auth_tree)
    loops = [n for n in ast.walk(auth_tree) if isinstance(n, ast.For)]
    assert loops, "every configured token must be compared"
    for loop in loops:
        assert not any(isinstance(n, ast.Return | ast.Break) for n in ast.walk(loop)), "no early exit"
    for node in ast.walk(auth_tree):
        if isinstance(node, ast.Compare):
            assert not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops), ast.unparse(node)
    digest_tree = _function_ast(middleware._digest)  # pyright: ignore[reportPrivateUsage]
    assert "sha256" in _calls(digest_tree)
    owner_tree = _function_ast(sessions.SessionManager.get)
    assert "compare_digest" in _calls(owner_tree)
    source = inspect.getsource(middleware) + inspect.getsource(sessions)
    assert "import hmac" in source or "import secrets" in source
