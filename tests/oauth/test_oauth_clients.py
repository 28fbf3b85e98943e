"""Real OAuth clients against a real server subprocess and a real OpenID provider (oidc-provider).

Both clients start from nothing but the server's URL: the 401's ``WWW-Authenticate`` leads them to
the protected resource metadata (RFC 9728), that to the authorization server's metadata, and that
to its endpoints. The TypeScript SDK registers itself (RFC 7591) and runs the authorization code
flow with PKCE and a ``resource`` (RFC 8707); the Python SDK uses client credentials.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import jwt
import pytest
from mcp import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from .oidc import OIDCProvider, new_key, secret

pytestmark = pytest.mark.timeout(120)

HERE = Path(__file__).resolve().parent
LIGHTHOUSE = {"prompt": "a lighthouse", "provider": "local"}


def _oauth_env(oidc: OIDCProvider) -> dict[str, str]:
    return {"MCP_OAUTH_ISSUER": oidc.issuer}


def _claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def _verify(oidc: OIDCProvider, token: str, audience: str) -> dict[str, Any]:
    """The token checks out against the provider's published keys, as the server checks it."""
    keys = jwt.PyJWKSet.from_dict(oidc.jwks())
    kid = jwt.get_unverified_header(token)["kid"]
    [key] = [k for k in keys.keys if k.key_id == kid]
    return dict(jwt.decode(token, key.key, algorithms=["RS256"], audience=audience, issuer=oidc.issuer))


async def _run_ts_client(url: str, scope: str) -> dict[str, Any]:
    if not (HERE / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json").is_file():
        pytest.skip("tests/oauth/node_modules is missing: run tests/setup.sh")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    proc = await asyncio.create_subprocess_exec(
        "node", str(HERE / "ts_oauth_client.mjs"), url, scope, cwd=str(HERE), env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(90):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    lines = [line for line in out.decode().splitlines() if line.strip()]
    assert lines, f"no output from the TypeScript client (exit {proc.returncode}):\n{err.decode()[-4000:]}"
    report = dict(json.loads(lines[-1]))
    assert proc.returncode == 0 and report["ok"], f"{report}\n{err.decode()[-4000:]}"
    return report


async def test_typescript_sdk_authorization_code_flow(http_server: Any, oidc: OIDCProvider) -> None:
    """Discovery from a 401, dynamic registration, PKCE, resource indicator, then a tool call."""
    async with http_server(env=_oauth_env(oidc), token=None) as url:
        origin = url.removesuffix("/mcp")
        report = await _run_ts_client(url, "images")

    assert report["firstConnect"] == "unauthorized"
    result = report["result"]
    assert not result["isError"], result
    assert result["images"] == 1 and "image" in result["contentTypes"], result

    hits = [(u["method"], u["url"].split("?")[0], u["status"]) for u in report["urls"]]
    assert ("POST", url, 401) in hits  # the first, tokenless request
    prm = [h for h in hits if h[1].startswith(f"{origin}/.well-known/oauth-protected-resource")]
    assert prm and prm[0][2] == 200, hits
    as_metadata = {f"{oidc.issuer}/.well-known/oauth-authorization-server", oidc.discovery_url}
    assert any(h[1] in as_metadata and h[2] == 200 for h in hits), hits
    assert ("POST", oidc.registration_endpoint, 201) in hits
    assert any(h[1] == f"{oidc.issuer}/auth" for h in hits), hits
    assert ("POST", oidc.token_endpoint, 200) in hits
    assert any(h[0] == "POST" and h[1] == url and h[2] == 200 for h in hits), hits  # then MCP works

    query = parse_qs(urlsplit(report["authorizationUrl"]).query)
    assert query["resource"] == [url]
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"]
    assert query["client_id"] == [report["clientId"]]
    assert set(query["scope"][0].split()) >= {"images"}

    claims = report["tokenClaims"]
    assert claims["iss"] == oidc.issuer and claims["aud"] == url
    assert claims["sub"] == "alice" and claims["client_id"] == report["clientId"]
    assert "images" in claims["scope"].split()


class _Memory:
    """TokenStorage in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


async def test_python_sdk_client_credentials(http_server: Any, oidc: OIDCProvider) -> None:
    """The Python SDK's ClientCredentialsOAuthProvider finds the issuer from the server and gets a token."""
    seen: list[tuple[str, str]] = []

    async def record(request: httpx2.Request) -> None:
        seen.append((request.method, str(request.url).split("?")[0]))

    storage = _Memory()
    async with http_server(env=_oauth_env(oidc), token=None) as url:
        origin = url.removesuffix("/mcp")
        auth = ClientCredentialsOAuthProvider(
            server_url=url, storage=storage, client_id="svc-user", client_secret=secret("svc-user"),
            scope="images", issuer=oidc.issuer,
        )
        async with (
            httpx2.AsyncClient(auth=auth, event_hooks={"request": [record]}) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            result = await client.call_tool("generate_image", LIGHTHOUSE)

    assert not result.is_error, result
    assert result.structured_content is not None and len(result.structured_content["images"]) == 1
    assert any(getattr(block, "type", None) == "image" for block in result.content)

    assert any(u.startswith(f"{origin}/.well-known/oauth-protected-resource") for _, u in seen), seen
    assert any(u.startswith(f"{oidc.issuer}/.well-known/") for _, u in seen), seen
    assert ("POST", oidc.token_endpoint) in seen

    assert storage.tokens is not None
    claims = _verify(oidc, storage.tokens.access_token, url)
    assert claims["sub"] == claims["client_id"] == "svc-user"  # a client_credentials token's sub is its client
    assert claims["scope"] == "images"


# --- the provider itself (no server): what the OAuth suites rely on -----------------------------

RESOURCE = "http://127.0.0.1:9/mcp"


def test_provider_discovery_and_client_credentials(oidc: OIDCProvider) -> None:
    status, _, body = oidc.request("GET", f"{oidc.issuer}/.well-known/oauth-authorization-server")
    assert status == 200
    meta = json.loads(body)
    assert meta["issuer"] == oidc.issuer and meta["jwks_uri"] == oidc.jwks_uri
    assert meta["token_endpoint"] == oidc.token_endpoint and meta["registration_endpoint"] == oidc.registration_endpoint
    assert meta["code_challenge_methods_supported"] == ["S256"] and "client_credentials" in meta["grant_types_supported"]

    for method in ("client_secret_basic", "client_secret_post"):
        claims = _verify(oidc, oidc.client_credentials("svc-user", "images", RESOURCE, method), RESOURCE)
        assert claims["sub"] == claims["client_id"] == "svc-user"  # client credentials: sub is the client_id
        assert claims["scope"] == "images" and claims["exp"] - claims["iat"] == oidc.ttl
        assert {"iss", "aud", "exp", "iat", "sub", "scope", "client_id", "jti"} <= set(claims)
    admin = _verify(oidc, oidc.client_credentials("svc-admin", "images images:admin", RESOURCE), RESOURCE)
    assert admin["scope"] == "images images:admin"
    assert _claims(oidc.client_credentials("svc-none", "other", RESOURCE))["scope"] == "other"
    assert jwt.get_unverified_header(oidc.client_credentials("svc-admin", "images", RESOURCE))["kid"] == oidc.keys[0]["kid"]

    assert oidc.token_response("svc-user", "images images:admin", RESOURCE)[1]["error"] == "invalid_scope"
    assert oidc.token_response("svc-none", "images", RESOURCE)[1]["error"] == "invalid_scope"
    assert oidc.token_response("svc-user", "images", "https://elsewhere.example/mcp")[1]["error"] == "invalid_target"
    assert oidc.token_response("svc-user", "images", RESOURCE, client_secret="wrong")[0] == 401


def test_provider_rotation_restart_and_minted_tokens(oidc: OIDCProvider) -> None:
    first = oidc.keys[0]["kid"]
    second = oidc.rotate()
    assert [k["kid"] for k in oidc.jwks()["keys"]] == [second, first]
    token = oidc.client_credentials("svc-user", "images", RESOURCE)
    assert jwt.get_unverified_header(token)["kid"] == second
    third = oidc.rotate(keep_old=False)
    assert [k["kid"] for k in oidc.jwks()["keys"]] == [third]

    port = oidc.port
    oidc.stop()
    with pytest.raises(OSError):
        oidc.jwks()
    oidc.start()
    assert oidc.port == port and [k["kid"] for k in oidc.jwks()["keys"]] == [third]
    _verify(oidc, oidc.client_credentials("svc-user", "images", RESOURCE), RESOURCE)

    minted = oidc.sign(oidc.claims(RESOURCE, sub="mallory"))
    assert _verify(oidc, minted, RESOURCE)["sub"] == "mallory"
    expired = oidc.sign(oidc.claims(RESOURCE, ttl=-120))
    with pytest.raises(jwt.ExpiredSignatureError):
        _verify(oidc, expired, RESOURCE)
    with pytest.raises(ValueError):  # a key the provider never published
        _verify(oidc, oidc.sign(oidc.claims(RESOURCE), key=new_key()), RESOURCE)
