"""The HTTP face of the OAuth resource server: RFC 9728 metadata, challenges, and scope step-up.

``OAuthGate`` joins the token verifier (oauth.py) to what a client must be told: where the
metadata is (``resource_metadata`` in every 401), which scope to ask for, and, when a verified
caller lacks the admin scope for a call, a 403 ``insufficient_scope`` it can answer by asking
the authorization server for more (MCP authorization, "Scope challenge handling").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from mcp_types import JSONRPCRequest

from ..oauth import Verifier
from .wire import JSON_CONTENT_TYPE, MCP_PATHS

__all__ = [
    "METADATA_PATH",
    "OAUTH_KEY",
    "REALM",
    "RESOURCE_PATH",
    "OAuthGate",
    "challenge",
    "insufficient_scope",
    "metadata_handler",
    "needs_admin",
    "oauth_owner",
    "quoted_safe",
]

REALM: Final = "mcp-image-server"
METADATA_PATH: Final = "/.well-known/oauth-protected-resource"
RESOURCE_PATH: Final = "/mcp"
"""The canonical resource (RFC 8707) for both MCP paths: a client of /mcp/v1/messages asks for it too."""


def quoted_safe(text: str) -> str:
    """For a quoted-string parameter: RFC 6750 allows neither ``"`` nor ``\\`` nor control characters."""
    return "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "?" for c in text)


def oauth_owner(owner: str) -> bytes:
    """What an OAuth caller's sessions bind to: its owner, so a refreshed token keeps the session."""
    return hashlib.sha256(b"oauth\0" + owner.encode()).digest()


def needs_admin(request: JSONRPCRequest) -> bool:
    """The calls only an admin may make (the tools check again, with the ``forbidden`` code)."""
    if request.method != "tools/call" or not isinstance(request.params, Mapping):
        return False
    name, arguments = request.params.get("name"), request.params.get("arguments")
    return name == "reload_config" or (
        name == "list_generations" and isinstance(arguments, Mapping) and arguments.get("all") is True
    )


@dataclass(frozen=True, slots=True)
class OAuthGate:
    verifier: Verifier
    base_url: Callable[[web.BaseRequest], str]
    """This server's public origin as the client reached it (MCP_PUBLIC_BASE_URL when set)."""

    @property
    def scope(self) -> str:
        return self.verifier.config.scope

    @property
    def admin_scope(self) -> str:
        return self.verifier.config.admin_scope

    @property
    def step_up_scope(self) -> str:
        """What to ask for to become an admin: both scopes, for clients that replace their set with it."""
        return f"{self.scope} {self.admin_scope}"

    def metadata_url(self, request: web.BaseRequest) -> str:
        return self.base_url(request) + METADATA_PATH + RESOURCE_PATH

    def metadata(self, request: web.BaseRequest) -> dict[str, Any]:
        """RFC 9728 protected resource metadata."""
        return {
            "resource": self.base_url(request) + RESOURCE_PATH,
            "authorization_servers": [self.verifier.config.issuer],
            "scopes_supported": [self.scope, self.admin_scope],
            "bearer_methods_supported": ["header"],
            "resource_name": "mcp-image-server",
        }


OAUTH_KEY: Final = web.AppKey("mcp_oauth_gate", OAuthGate)


def challenge(gate: OAuthGate | None, request: web.BaseRequest, *, error: str | None = "invalid_token",
              description: str | None = None, scope: str | None = None) -> str:
    """A ``WWW-Authenticate`` value: with OAuth, where the metadata is and which scope to ask for."""
    parts = [f'realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{quoted_safe(description)}"')
    if gate is not None:
        parts.append(f'resource_metadata="{gate.metadata_url(request)}"')
        parts.append(f'scope="{quoted_safe(scope or gate.scope)}"')
    return "Bearer " + ", ".join(parts)


def insufficient_scope(gate: OAuthGate, request: web.BaseRequest, scope: str, what: str) -> web.Response:
    description = f"{what} needs the scope {scope}" if " " not in scope else f"{what} needs the scopes {scope}"
    body = {"error": "insufficient_scope", "error_description": description, "scope": scope}
    return web.Response(
        status=403, body=json.dumps(body).encode(), content_type=JSON_CONTENT_TYPE,
        headers={"WWW-Authenticate": challenge(gate, request, error="insufficient_scope",
                                               description=description, scope=scope)},
    )


async def metadata_handler(request: web.Request) -> web.Response:
    """``GET /.well-known/oauth-protected-resource[/mcp]``; 404 for other paths or without OAuth."""
    gate: OAuthGate | None = request.app.get(OAUTH_KEY)
    suffix = request.path[len(METADATA_PATH):]
    if gate is None or (suffix and suffix not in MCP_PATHS):
        raise web.HTTPNotFound()
    return web.json_response(gate.metadata(request), headers={"Cache-Control": "public, max-age=300"})

