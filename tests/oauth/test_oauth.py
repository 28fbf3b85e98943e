"""The OAuth 2.1 resource server against a real OpenID provider (node oidc-provider on loopback).

A subprocess server with ``MCP_OAUTH_ISSUER`` pointing at the provider: RFC 9728 metadata and
challenges, client-credentials tokens driving the SDK client, scopes mapped to roles with a
403 ``insufficient_scope`` step-up per tool, tenants named by ``sub`` with the isolation and
limits of named tokens, a corpus of hostile tokens refused with precise 401s, keys rotated at the
provider while the server runs, and the issuer going away (503, never a pass) and coming back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import RSAAlgorithm
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from .oidc import OIDCProvider, free_port, new_key

pytestmark = pytest.mark.timeout(180)

STATIC = "static-admin-token-0123456789"
SMALL = {"provider": "local", "resolution": "64x64", "inline": "none"}
LEGACY_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@asynccontextmanager
async def _client(url: str, token: str, mode: str = "auto") -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,  # type: ignore[arg-type]
    ):
        yield client


async def _post(url: str, token: str | None, body: dict[str, Any], session: str | None = None,
                ) -> tuple[int, dict[str, str], Any]:
    headers = dict(LEGACY_HEADERS)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if session is not None:
        headers["Mcp-Session-Id"] = session
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as r:
        text = await r.text()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        return r.status, dict(r.headers), parsed


_INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}


async def _session(url: str, token: str) -> str:
    status, headers, body = await _post(url, token, _INIT)
    assert status == 200, (status, body)
    session = headers["Mcp-Session-Id"]
    status, _, _ = await _post(url, token, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    assert status == 202
    return session


def _call(name: str, arguments: dict[str, Any], id_: int = 2) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


async def _health(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(url.rsplit("/", 1)[0] + "/health") as r:
        return dict(await r.json())


def _www(headers: dict[str, str]) -> str:
    return headers.get("WWW-Authenticate", "")


async def test_metadata_challenges_scopes_and_tenants(http_server: Any, oidc: OIDCProvider, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text('[[tokens]]\nname = "svc"\nsubject = "svc-user"\nimages_per_day = 2\n')
    env = {"MCP_OAUTH_ISSUER": oidc.issuer, "MCP_TOKENS_FILE": str(tokens)}
    async with http_server(env=env, token=STATIC) as url:
        base = url.rsplit("/", 1)[0]
        async with aiohttp.ClientSession() as http:
            # RFC 9728 metadata at the path-inserted and the root location; not an authorization server.
            for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
                async with http.get(base + path) as r:
                    assert r.status == 200, path
                    meta = await r.json()
                assert meta["resource"] == url
                assert meta["authorization_servers"] == [oidc.issuer]
                assert meta["scopes_supported"] == ["images", "images:admin"]
                assert meta["bearer_methods_supported"] == ["header"]
            for path in ("/.well-known/oauth-authorization-server", "/.well-known/oauth-protected-resource/x"):
                async with http.get(base + path) as r:
                    assert r.status == 404, path

        # No token: 401 saying where the metadata is and which scope to ask for, with no error code.
        status, headers, body = await _post(url, None, _INIT)
        assert status == 401
        www = _www(headers)
        assert f'resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"' in www
        assert 'scope="images"' in www and "error=" not in www
        # A wrong static token: the same, with invalid_token.
        status, headers, _ = await _post(url, "not-a-token-of-ours", _INIT)
        assert status == 401 and 'error="invalid_token"' in _www(headers) and "resource_metadata=" in _www(headers)

        user = oidc.client_credentials("svc-user", "images", url)
        admin = oidc.client_credentials("svc-admin", "images images:admin", url)
        other = oidc.client_credentials("svc-none", "other", url)

        # The static token keeps working beside OAuth.
        async with _client(url, STATIC) as client:
            assert (await client.call_tool("list_providers", {})).is_error is False

        # A client-credentials token: generate, on both protocol eras; the subject entry names the tenant.
        async with _client(url, user) as client:
            first = await client.call_tool("generate_image", {"prompt": "a lighthouse", **SMALL})
            assert first.is_error is False, first.content
            image_id = first.structured_content["images"][0]["image_id"]
            # Not an admin: the per-tool check answers on the wire with the scope to ask for.
            with pytest.raises(MCPError):
                await client.call_tool("reload_config", {})
        async with _client(url, user, mode="legacy") as client:
            second = await client.call_tool("generate_image", {"prompt": "a boat", **SMALL})
            assert second.is_error is False
            # images_per_day = 2 from the subject entry: the third is refused.
            third = await client.call_tool("generate_image", {"prompt": "a third", **SMALL})
            assert third.is_error is True and third.structured_content["error"]["code"] == "quota_exceeded"
            assert "'svc'" in third.structured_content["error"]["message"]

        # The step-up 403, seen raw: insufficient_scope naming the admin scope.
        session = await _session(url, user)
        status, headers, body = await _post(url, user, _call("reload_config", {}), session)
        assert status == 403, body
        www = _www(headers)
        assert 'error="insufficient_scope"' in www and 'scope="images images:admin"' in www
        assert "resource_metadata=" in www and body["scope"] == "images images:admin"
        status, headers, _ = await _post(url, user, _call("list_generations", {"all": True}, 3), session)
        assert status == 403 and 'scope="images images:admin"' in _www(headers)
        status, _, body = await _post(url, user, _call("list_generations", {}, 4), session)
        assert status == 200 and body["result"]["structuredContent"]["ok"] is True

        # A token without the images scope: 403 before anything runs.
        status, headers, _ = await _post(url, other, _INIT)
        assert status == 403 and 'error="insufficient_scope"' in _www(headers) and 'scope="images"' in _www(headers)

        # The admin scope: admin tools and everyone's jobs.
        async with _client(url, admin) as client:
            reloaded = await client.call_tool("reload_config", {})
            assert reloaded.is_error is False, reloaded.content
            every = await client.call_tool("list_generations", {"all": True})
            assert len(every.structured_content["jobs"]) == 2

        # Another subject, validly signed by the provider: its own tenant, blind to svc's image.
        bob = oidc.sign(oidc.claims(url, client="bob", sub="bob"))
        async with _client(url, bob) as client:
            seen = await client.call_tool("get_image_data", {"image_id": image_id})
            assert seen.is_error is True and seen.structured_content["error"]["code"] == "image_not_found"
            mine = await client.call_tool("list_generations", {})
            assert mine.structured_content["jobs"] == []

        # /metrics: admins only, here too.
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/metrics", headers={"Authorization": f"Bearer {user}"}) as r:
                assert r.status == 403 and 'scope="images images:admin"' in r.headers["WWW-Authenticate"]
            async with http.get(base + "/metrics", headers={"Authorization": f"Bearer {admin}"}) as r:
                assert r.status == 200 and "mcp_image_tool_calls_total" in await r.text()

    log = (tmp_path / "http-server.log").read_text()
    for secret in (user, admin, other, bob, STATIC):
        assert secret not in log and secret.split(".")[-1] not in log


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hostile(oidc: OIDCProvider, url: str) -> dict[str, tuple[str, str]]:
    """Tokens that must all be refused: name -> (token, words the 401 must carry)."""
    good = oidc.claims(url)
    real = oidc.sign(good)
    head, payload, sig = real.split(".")
    forged = dict(good, sub="svc-admin", scope="images images:admin")
    stranger = new_key()
    public = oidc.jwks()["keys"][0]
    # The classic confusion: HMAC keyed with the issuer's public key (its PEM), which anyone can fetch.
    pem = RSAAlgorithm.from_jwk(json.dumps(public)).public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    hs_head = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": public["kid"]}).encode())
    hs_body = _b64(json.dumps(good).encode())
    hs_sig = _b64(hmac.new(pem, f"{hs_head}.{hs_body}".encode(), hashlib.sha256).digest())
    return {
        "expired": (oidc.sign(dict(good, iat=good["iat"] - 7200, exp=good["iat"] - 3600)), "expired"),
        "not yet valid": (oidc.sign(dict(good, nbf=good["iat"] + 3600)), "not valid yet"),
        "issued in the future": (oidc.sign(dict(good, iat=good["iat"] + 3600)), "not valid yet"),
        "other audience": (oidc.client_credentials("svc-user", "images", "http://127.0.0.1:1/mcp"),
                           "another audience"),
        "other issuer": (oidc.sign(dict(good, iss="http://127.0.0.1:1")), "another issuer"),
        "tampered payload": (f"{head}.{_b64(json.dumps(forged).encode())}.{sig}", "signature does not verify"),
        "another token's signature": (f"{head}.{payload}.{oidc.sign(dict(good, jti='x')).split('.')[2]}",
                                      "signature does not verify"),
        "signature left off": (f"{head}.{payload}.", "signature does not verify"),
        "unknown key": (oidc.sign(good, key=stranger), "does not publish"),
        "right kid, stranger's key": (oidc.sign(good, key=dict(stranger, kid=oidc.keys[0]["kid"])),
                                      "signature does not verify"),
        "alg none": (oidc.sign(good, alg="none"), "unsigned"),
        "HS256 with the public key": (f"{hs_head}.{hs_body}.{hs_sig}", "HMAC"),
        "alg of another key type": (
            f"{_b64(json.dumps({'alg': 'ES256', 'typ': 'at+jwt', 'kid': public['kid']}).encode())}.{payload}.{sig}",
            "ES256"),
        "no exp": (oidc.sign({k: v for k, v in good.items() if k != "exp"}), "'exp'"),
        "no sub": (oidc.sign({k: v for k, v in good.items() if k != "sub"}), "'sub'"),
        "not JSON": (f"{_b64(b'{not json')}.{payload}.{sig}", "well-formed"),
    }


async def test_hostile_tokens_get_precise_401s(http_server: Any, oidc: OIDCProvider, tmp_path: Path) -> None:
    async with http_server(env={"MCP_OAUTH_ISSUER": oidc.issuer}, token=None) as url:
        corpus = _hostile(oidc, url)
        for name, (token, words) in corpus.items():
            status, headers, body = await _post(url, token, _INIT)
            assert status == 401, (name, status, body)
            assert body["error"] == "invalid_token", name
            assert words in body["error_description"], (name, body["error_description"])
            www = _www(headers)
            assert 'error="invalid_token"' in www and "resource_metadata=" in www, name
        # The real token from the same claims passes: the corpus is refused for what it changes.
        status, _, body = await _post(url, oidc.sign(oidc.claims(url)), _INIT)
        assert status == 200, body
    log = (tmp_path / "http-server.log").read_text()
    assert "Traceback" not in log
    for token, _ in corpus.values():
        assert token not in log


async def test_key_rotation_at_the_provider(http_server: Any, oidc: OIDCProvider) -> None:
    async with http_server(env={"MCP_OAUTH_ISSUER": oidc.issuer}, token=None) as url:
        before = oidc.client_credentials("svc-user", "images", url)
        assert (await _post(url, before, _INIT))[0] == 200
        # A new signing key, the old one still published: tokens of both verify.
        new_kid = oidc.rotate(keep_old=True)
        after = oidc.client_credentials("svc-user", "images", url)
        assert json.loads(base64.urlsafe_b64decode(after.split(".")[0] + "==")).get("kid") == new_kid
        assert (await _post(url, after, _INIT))[0] == 200
        assert (await _post(url, before, _INIT))[0] == 200
        # The old keys retired: the next new key's token refreshes the set and the old token is refused,
        # even though it was accepted (and cached) a moment ago and has not expired.
        oidc.rotate(keep_old=False)
        latest = oidc.client_credentials("svc-user", "images", url)
        assert (await _post(url, latest, _INIT))[0] == 200
        status, _, body = await _post(url, before, _INIT)
        assert status == 401 and "does not publish" in body["error_description"], body


async def test_issuer_down_gives_503_never_a_pass(http_server: Any, tmp_path: Path) -> None:
    (tmp_path / "idp").mkdir()
    oidc = OIDCProvider(tmp_path / "idp", port=free_port())
    async with http_server(env={"MCP_OAUTH_ISSUER": oidc.issuer}, token=STATIC) as url:
        token = oidc.sign(oidc.claims(url))
        status, headers, body = await _post(url, token, _INIT)
        assert status == 503 and headers.get("Retry-After"), body
        assert (await _health(url))["oauth"] == {"issuer": oidc.issuer, "keys": "unavailable"}
        assert (await _post(url, STATIC, _INIT))[0] == 200  # static tokens do not depend on the issuer
        assert (await _post(url, None, _INIT))[0] == 401
        oidc.start()
        try:
            assert (await _post(url, token, _INIT))[0] == 200
            assert (await _health(url))["oauth"]["keys"] == 1
            # Down again, and a key the server has not seen: no refresh possible, so 503, not 401 or 200.
            oidc.stop()
            oidc.rotate(keep_old=False)
            rotated = oidc.sign(oidc.claims(url))
            assert (await _post(url, rotated, _INIT))[0] == 503
            assert (await _post(url, token, _INIT))[0] == 200  # a cached key still verifies what it signed
            oidc.start()
            assert (await _post(url, rotated, _INIT))[0] == 200
        finally:
            oidc.stop()
    log = (tmp_path / "http-server.log").read_text()
    assert f"OAuth issuer {oidc.issuer}:" in log and "get 503 until it answers" in log
    assert "answers again" in log


def test_settings_refuse_what_cannot_work(tmp_path: Path) -> None:
    from mcp_image_server.config import load_settings
    from mcp_image_server.errors import ConfigError

    for env, words in (
        ({"MCP_OAUTH_ISSUER": "http://idp.example.com"}, "https://"),
        ({"MCP_OAUTH_ISSUER": "https://idp.example.com?x=1"}, "issuer URL"),
        ({"MCP_OAUTH_SCOPE": "two words"}, "one scope name"),
        ({"MCP_OAUTH_NAME_CLAIM": "a b"}, "claim name"),
    ):
        with pytest.raises(ConfigError, match=words):
            load_settings(env)
    ok = load_settings({"MCP_OAUTH_ISSUER": "https://tenant.auth0.com/"})
    assert ok.oauth_issuer == "https://tenant.auth0.com/"  # the trailing slash is part of Auth0's issuer


async def test_public_bind_without_audience_stops_with_one_line(tmp_path: Path) -> None:
    import asyncio
    import sys

    from tests.conftest import server_env

    env = server_env(tmp_path / "images", {"MCP_TRANSPORT": "http", "MCP_HOST": "0.0.0.0", "MCP_PORT": "0",
                                           "MCP_OAUTH_ISSUER": "https://idp.example.com"})
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "mcp_image_server", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, err
    assert b"MCP_PUBLIC_BASE_URL" in err and b"Traceback" not in err


def test_subject_entries_in_the_tokens_file(tmp_path: Path) -> None:
    from mcp_image_server.tenants import Directory, load_tokens_file

    good = tmp_path / "tokens.toml"
    good.write_text('[[tokens]]\nname = "bot"\nsubject = "svc-render"\nimages_per_day = 5\n'
                    '[[tokens]]\nname = "everyone"\nsubject = "*"\nimages_per_day = 1\n')
    directory = Directory.build((), load_tokens_file(str(good)))
    assert directory.by_digest == {}  # a subject entry is never a static token
    bot = directory.oauth_caller("svc-render", admin=False)
    assert (bot.name, bot.owner, bot.role, bot.limits.images_per_day, bot.oauth) == (
        "bot", "tenant:bot", "user", 5, True)
    assert directory.oauth_caller("svc-render", admin=True).role == "admin"  # the scopes decide
    anyone = directory.oauth_caller("carol", admin=False)
    assert (anyone.owner, anyone.limits.images_per_day) == ("oauth:carol", 1)
    assert "tenant:bot" in directory.by_owner and "tenant:everyone" not in directory.by_owner
    for text, words in (
        ('name = "a"\nsubject = "s"\nrole = "admin"', "comes from its scopes"),
        ('name = "a"\nsubject = "s"\ntoken_sha256 = "' + "0" * 64 + '"', "exactly one of"),
        ('name = "a"\nsubject = ""', "name claim"),
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text("[[tokens]]\n" + text + "\n")
        with pytest.raises(ValueError, match=words):
            load_tokens_file(str(bad))
    twice = tmp_path / "twice.toml"
    twice.write_text('[[tokens]]\nname = "a"\nsubject = "s"\n[[tokens]]\nname = "b"\nsubject = "s"\n')
    with pytest.raises(ValueError, match="listed twice"):
        load_tokens_file(str(twice))
