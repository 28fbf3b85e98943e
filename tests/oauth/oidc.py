"""A real OpenID provider on loopback: panva's ``oidc-provider`` (tests/oauth/provider.mjs) in a node subprocess.

``OIDCProvider.start()`` writes the signing keys to ``workdir/oidc-keys.json``, spawns
``node provider.mjs`` and waits for its ``READY <port>`` line; its log goes to ``workdir/oidc.log``.
``stop()`` and ``start()`` again on the same port stand for an issuer that goes down and comes back
(with the same keys and clients; tokens and registrations made before are gone, it is in memory).

The provider serves client credentials for the static clients ``svc-user`` (scope ``images``),
``svc-admin`` (``images images:admin``) and ``svc-none`` (``other``), secrets ``<client>-secret``;
dynamic client registration; and an authorization code flow whose login and consent are automatic
(account ``alice``). Its access tokens for a loopback ``resource`` are RS256 JWTs with
``iss``, ``aud`` (the resource), ``exp``, ``iat``, ``jti``, ``sub``, ``scope`` and ``client_id``; a
client-credentials token's ``sub`` is its ``client_id``. A scope outside the client's allowance is
refused (``invalid_scope``), not trimmed; a non-loopback resource is ``invalid_target``; without a
``resource`` the token is opaque (oidc-provider's userinfo token), not a JWT. ``rotate()`` switches it
to a new signing key while it runs; ``sign()`` mints tokens it never issued (expired, wrong audience,
foreign key...).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

HERE = Path(__file__).resolve().parent
NODE = shutil.which("node")
START_TIMEOUT = 30.0

CLIENTS: dict[str, str] = {"svc-user": "images", "svc-admin": "images images:admin", "svc-none": "other"}
"""The provider's static confidential clients and the scopes each may ask for; the secret is ``<client>-secret``."""


def secret(client: str) -> str:
    return f"{client}-secret"


def new_key(alg: str = "RS256") -> dict[str, Any]:
    """A fresh RSA 2048 private JWK with a random hex ``kid``."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(private))
    jwk.update(kid=secrets.token_hex(8), alg=alg, use="sig")
    return jwk


def public(jwk: dict[str, Any]) -> dict[str, Any]:
    """The public half of a private RSA JWK."""
    return {k: v for k, v in jwk.items() if k in ("kty", "n", "e", "kid", "alg", "use")}


def _unavailable(reason: str) -> None:
    if os.environ.get("MCP_TEST_REQUIRE_ALL") == "1":
        pytest.fail(f"{reason} (required: MCP_TEST_REQUIRE_ALL=1)")
    pytest.skip(reason)


class OIDCProvider:
    def __init__(self, workdir: Path, port: int = 0, ttl: int = 300, account: str = "alice") -> None:
        self.workdir = workdir
        self.ttl = ttl
        self.account = account
        """Who the automated login of the authorization code flow signs in as (the tokens' ``sub``)."""
        self._port = port
        self.keys: list[dict[str, Any]] = [new_key()]
        """The private JWKs the provider holds; the first one signs."""
        self.keys_file = workdir / "oidc-keys.json"
        self.log_file = workdir / "oidc.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None
        self._reader: threading.Thread | None = None

    # --- where it is ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._port, "the provider has not started yet"
        return self._port

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def registration_endpoint(self) -> str:
        return f"{self.issuer}/reg"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- life -----------------------------------------------------------------------------------

    def start(self) -> None:
        if NODE is None:
            _unavailable("node is not installed (Node.js >= 20; then run tests/setup.sh)")
        if not (HERE / "node_modules" / "oidc-provider" / "package.json").is_file():
            _unavailable("tests/oauth/node_modules is missing: run tests/setup.sh (or tests/oauth/install.sh)")
        assert not self.running, "already running"
        self._write_keys()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "OIDC_PORT": str(self._port),
            "OIDC_KEYS_FILE": str(self.keys_file),
            "OIDC_TOKEN_TTL": str(self.ttl),
            "OIDC_ACCOUNT": self.account,
        }
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # a port just freed by stop() may linger a moment
            port = self._spawn(env, deadline)
            if port is not None:
                self._port = port
                return
            if self._port == 0 or time.monotonic() > deadline or "EADDRINUSE" not in self._log_tail():
                raise RuntimeError(f"oidc-provider did not start; see {self.log_file}:\n{self._log_tail()}")
            time.sleep(0.2)

    def _spawn(self, env: dict[str, str], deadline: float) -> int | None:
        self._proc = proc = subprocess.Popen(
            [NODE or "node", str(HERE / "provider.mjs")],
            cwd=HERE, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        err = proc.stderr

        def pump() -> None:  # keeps stderr drained into the log for the provider's whole life
            with err, self.log_file.open("ab") as log:
                for line in err:
                    log.write(line)
                    log.flush()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        found: list[int] = []
        ready = threading.Event()

        def wait_ready() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith(b"READY "):
                    found.append(int(line.split()[1]))
                    break
            ready.set()

        self._reader = threading.Thread(target=wait_ready, daemon=True)
        self._reader.start()
        if ready.wait(max(0.1, deadline - time.monotonic())) and found and proc.poll() is None:
            return found[0]
        self.stop()
        return None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        for thread in (self._reader, self._pump):  # both end at EOF, once the process is gone
            if thread is not None:
                thread.join(10)
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = self._pump = self._reader = None

    def kill(self) -> None:
        """SIGKILL: gone without closing its connections."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self.stop()

    def _write_keys(self) -> None:
        tmp = self.keys_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keys": self.keys}))
        tmp.replace(self.keys_file)

    def _log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""

    # --- talking to it --------------------------------------------------------------------------

    def request(
        self, method: str, url: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """A plain urllib request; answers (status, headers, body) for any status."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        if body is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def token_response(
        self, client: str, scope: str | None, resource: str | None, method: str = "client_secret_basic",
        client_secret: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """The raw client-credentials token response (status, JSON body), errors included."""
        data = {"grant_type": "client_credentials"}
        if scope is not None:
            data["scope"] = scope
        if resource is not None:
            data["resource"] = resource
        headers = {}
        password = secret(client) if client_secret is None else client_secret
        if method == "client_secret_basic":
            quote = urllib.parse.quote  # RFC 6749 2.3.1: form-encode, then Basic
            pair = f"{quote(client, safe='')}:{quote(password, safe='')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            data.update(client_id=client, client_secret=password)
        status, _, body = self.request("POST", self.token_endpoint, data, headers)
        return status, json.loads(body or b"{}")

    def client_credentials(self, client: str, scope: str, resource: str, method: str = "client_secret_basic") -> str:
        """An access token (a JWT whose ``aud`` is ``resource``) for one of the static clients."""
        status, body = self.token_response(client, scope, resource, method)
        assert status == 200, f"token request for {client} failed: {status} {body}"
        return str(body["access_token"])

    def rotate(self, keep_old: bool = True) -> str:
        """Switch the running provider to a new signing key (published first in its JWKS); returns its kid.

        ``keep_old`` keeps the previous keys published (but no longer signing), as a real rotation does."""
        key = new_key()
        self.keys = [key, *self.keys] if keep_old else [key]
        self._write_keys()
        if self.running:
            status, _, body = self.request("POST", f"{self.issuer}/__rotate", {})
            assert status == 204, f"rotation failed: {status} {body!r}"
        return str(key["kid"])

    def jwks(self) -> dict[str, Any]:
        status, _, body = self.request("GET", self.jwks_uri)
        assert status == 200, status
        return dict(json.loads(body))

    # --- tokens it never issued -----------------------------------------------------------------

    def sign(
        self, claims: dict[str, Any], key: dict[str, Any] | None = None, headers: dict[str, Any] | None = None,
        alg: str = "RS256",
    ) -> str:
        """A JWT with ``claims`` as is, signed with the provider's current key (or ``key``, a private JWK).

        The header gets the key's ``kid`` and ``typ: at+jwt``, then ``headers`` on top. For ``alg`` HS*
        pass ``key={"k": <secret bytes or str>}``; ``alg="none"`` makes an unsigned token."""
        key = self.keys[0] if key is None else key
        head: dict[str, Any] = {"typ": "at+jwt"}
        if "kid" in key:
            head["kid"] = key["kid"]
        head.update(headers or {})
        if alg == "none":
            return jwt.encode(claims, None, algorithm="none", headers=head)
        if alg.startswith("HS"):
            k = key["k"]
            secret_bytes = k if isinstance(k, bytes) else str(k).encode()
            return jwt.encode(claims, secret_bytes, algorithm=alg, headers=head)
        signing_key = RSAAlgorithm.from_jwk(json.dumps(key))
        return jwt.encode(claims, signing_key, algorithm=alg, headers=head)  # type: ignore[arg-type]

    def claims(self, resource: str, client: str = "svc-user", scope: str = "images", ttl: int | None = None,
               **extra: Any) -> dict[str, Any]:
        """Claims shaped like the provider's own access tokens (for ``sign``), overridable with ``extra``."""
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.issuer, "aud": resource, "sub": client, "client_id": client, "scope": scope,
            "iat": now, "exp": now + (self.ttl if ttl is None else ttl), "jti": secrets.token_hex(12),
        }
        base.update(extra)
        return base


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
