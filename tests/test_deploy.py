"""The deployment files cannot drift from the package: Dockerfile, deploy/ (compose, nginx), server.json.

Pure file checks, no Docker and no network: every environment key in the compose file is a real
setting, secrets only ever arrive by ``${...}``, the nginx upstreams are the api services, the
image runs the console script and checks ``/health``, and ``server.json`` agrees with
``pyproject.toml``, ``__version__`` and the secret flags of ``config.FIELDS``.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from mcp_image_server import __version__
from mcp_image_server.cli import _parser
from mcp_image_server.config import FIELDS, load_settings
from mcp_image_server.state.redis import P as REDIS_PREFIX
from mcp_image_server.transports.wire import MCP_PATHS

from .conftest import REPO

DEPLOY = REPO / "deploy"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
BY_NAME = {name: f for f in FIELDS for name in (f.env, *f.aliases)}
FIELD_DEFAULT = {f.env: f.default for f in FIELDS}
INTERPOLATION = re.compile(r"^\$\{(?P<var>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}$")
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY\b|_KEY_")


# --- helpers ----------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the "KEY=value" list form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    assert all(isinstance(v, str) for v in env.values()), f"quote every environment value: {env}"
    return dict(env)


def app_services() -> dict[str, dict[str, Any]]:
    """The services that run this package (built from the Dockerfile)."""
    return {name: s for name, s in compose()["services"].items() if "build" in s}


def resolve(value: str) -> str:
    """A value as compose would substitute it with nothing set: defaults, and a stand-in for ``:?``."""

    def one(m: re.Match[str]) -> str:
        op, arg = m.group("op"), m.group("arg") or ""
        if op in ("-", ":-"):
            return arg
        if op in ("?", ":?"):
            return f"stand-in-for-{m.group('var').lower()}"
        return ""

    return re.sub(r"\$\{(?P<var>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}", one, value)


def dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    lines: list[str] = []
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1].rstrip() + " " + raw.strip()
        else:
            lines.append(raw.strip())
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in dockerfile():
        if word == "ENV":
            env.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", rest))
    return env


def nginx_conf() -> str:
    return "\n".join(line.split("#", 1)[0] for line in (DEPLOY / "nginx.conf").read_text().splitlines())


def nginx_blocks(kind: str) -> dict[str, str]:
    """``{argument: body}`` of the flat ``kind ... { ... }`` blocks (upstream, location, map)."""
    return {
        m.group(1).strip(): m.group(2) for m in re.finditer(r"\b" + kind + r"\s+([^{;]+)\{([^{}]*)\}", nginx_conf())
    }


def server_json() -> dict[str, Any]:
    doc = json.loads((REPO / "server.json").read_text())
    assert isinstance(doc, dict)
    return doc


# --- compose ----------------------------------------------------------------------------------


def test_compose_app_services_use_only_real_settings() -> None:
    apps = app_services()
    assert apps, "no service builds the Dockerfile"
    for name, service in apps.items():
        unknown = sorted(set(env_of(service)) - set(BY_NAME))
        assert not unknown, f"{name}: not settings in mcp_image_server/config.py FIELDS: {unknown}"


def test_compose_env_values_are_valid_settings() -> None:
    # Every replica's environment, as compose substitutes it, loads without a ConfigError.
    image_env = docker_env()
    for name, service in app_services().items():
        env = {**image_env, **{k: resolve(v) for k, v in env_of(service).items()}, "MCP_ENV_FILE": "/nonexistent"}
        settings = load_settings(env)
        assert settings.role in ("api", "worker"), name
        assert settings.state_url is not None and settings.state_url.get().startswith("redis://"), name
        assert (settings.image_store_url or "").startswith("s3://"), name
        assert settings.public_base_url, f"{name}: MCP_PUBLIC_BASE_URL must point at nginx"


def test_compose_secrets_only_arrive_by_interpolation() -> None:
    for name, service in compose()["services"].items():
        for key, value in env_of(service).items():
            field = BY_NAME.get(key)
            if not ((field is not None and field.secret) or SECRETISH.search(key)):
                continue
            m = INTERPOLATION.match(value)
            assert m, f"{name}: {key} must be a ${{...}} interpolation, not a literal: {value!r}"
            if m.group("op") in ("-", ":-"):
                default = m.group("arg") or ""
                assert "://" not in default or urlsplit(default).password is None, (
                    f"{name}: {key} default has a password"
                )


def test_compose_roles_replica_ids_health_and_ports() -> None:
    services = compose()["services"]
    apps = app_services()
    roles = {name: env_of(s).get("MCP_ROLE") for name, s in apps.items()}
    assert sorted(r for r in roles.values() if r) == ["api", "api", "worker"], roles
    ids = [env_of(s).get("MCP_REPLICA_ID") for s in apps.values()]
    assert all(ids) and len(set(ids)) == len(ids), f"every replica needs its own MCP_REPLICA_ID: {ids}"
    for name, service in apps.items():
        if roles[name] == "worker":
            assert "ports" not in service and "expose" not in service, f"{name}: a worker serves no HTTP"
            test = " ".join(service["healthcheck"]["test"])
            # The lease key the worker's health check looks for (state/redis.py).
            assert f"'{REDIS_PREFIX}replica:'" in test and "MCP_REPLICA_ID" in test, test
        else:
            assert "ports" not in service, f"{name}: only nginx publishes a port"
    dockerfile_healthcheck = any(word == "HEALTHCHECK" for word, _ in dockerfile())
    for name, service in services.items():
        for target, dep in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on an unknown service {target}"
            condition = dep["condition"]
            if condition == "service_healthy":
                own = "healthcheck" in services[target]
                from_image = target in apps and roles[target] != "worker" and dockerfile_healthcheck
                assert own or from_image, f"{name} waits for {target} to be healthy, which has no health check"
            else:
                assert condition == "service_completed_successfully", condition
                assert services[target].get("restart") == "no", f'{target} is a one-shot: restart: "no"'


def test_compose_redis_and_minio() -> None:
    services = compose()["services"]
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    assert redis["command"][redis["command"].index("--save") + 1] == "" and "--appendonly" in redis["command"]
    assert "ports" not in redis
    bucket = urlsplit(resolve(env_of(next(iter(app_services().values())))["MCP_IMAGE_STORE_URL"])).netloc
    init = " ".join(services["minio-init"]["command"])
    assert f"mc mb --ignore-existing store/{bucket}" in init, init
    for name in ("minio", "minio-init"):
        assert ":latest" not in services[name]["image"] and ":" in services[name]["image"], "pin MinIO's images"


def test_compose_nginx_mounts_the_config() -> None:
    nginx = compose()["services"]["nginx"]
    assert any(v.startswith("./nginx.conf:") for v in nginx["volumes"]), nginx["volumes"]
    public = urlsplit(resolve(env_of(next(iter(app_services().values())))["MCP_PUBLIC_BASE_URL"]))
    assert [p.split(":")[0] for p in nginx["ports"]] == [str(public.port)], "MCP_PUBLIC_BASE_URL is nginx's port"


# --- nginx ------------------------------------------------------------------------------------


def test_nginx_upstreams_are_exactly_the_api_services() -> None:
    api = {name for name, s in app_services().items() if env_of(s).get("MCP_ROLE") == "api"}
    port = docker_env().get("MCP_PORT", FIELD_DEFAULT["MCP_PORT"])
    upstreams = nginx_blocks("upstream")
    assert upstreams
    for name, body in upstreams.items():
        servers = re.findall(r"^\s*server\s+([^\s;]+)", body, re.MULTILINE)
        assert sorted(servers) == sorted(f"{s}:{port}" for s in api), f"upstream {name}: {servers}"
    conf = nginx_conf()
    for target in re.findall(r"proxy_pass\s+http://([^/;\s]+)", conf):
        assert target in upstreams, f"proxy_pass to an undefined upstream {target}"


def test_nginx_mcp_location_streams_and_has_affinity() -> None:
    locations = nginx_blocks("location")
    mcp = [(arg, body) for arg, body in locations.items() if arg.startswith("~") and "mcp" in arg]
    assert len(mcp) == 1, locations.keys()
    pattern, body = mcp[0]
    rx = re.compile(pattern.lstrip("~*").strip())
    assert all(rx.search(p) for p in MCP_PATHS), (pattern, MCP_PATHS)
    assert not rx.search("/mcpx") and not rx.search("/mcp/other")
    assert re.search(r"proxy_buffering\s+off;", body), "SSE needs proxy_buffering off"
    read = re.search(r"proxy_read_timeout\s+(\d+)s;", body)
    assert read and int(read.group(1)) >= 600
    size = re.search(r"client_max_body_size\s+(\d+)m;", body)
    assert size and int(size.group(1)) * 1024 * 1024 == int(FIELD_DEFAULT["MCP_MAX_BODY_BYTES"])
    upstream = re.search(r"proxy_pass\s+http://([\w-]+)", body)
    assert upstream
    balancing = nginx_blocks("upstream")[upstream.group(1)]
    hashed = re.search(r"^\s*hash\s+(\$\w+)\s+consistent;", balancing, re.MULTILINE)
    assert hashed, "the MCP upstream needs hash ... consistent (handshake-era session affinity)"
    # Keyed on the session id alone, initialize (which has none yet) lands apart from its session.
    assert hashed.group(1) != "$http_mcp_session_id"
    maps = {arg.split()[1]: body for arg, body in nginx_blocks("map").items()}
    assert nginx_blocks("map") and all(arg.split()[0] == "$http_mcp_protocol_version" for arg in nginx_blocks("map"))
    entries = dict(re.findall(r'^\s*("[^"]*"|\S+)\s+(.+?);\s*$', maps[hashed.group(1)], re.MULTILINE))
    pinned = {k.strip('"') for k, v in entries.items() if "$http_authorization" in v}
    assert pinned == {"", *HANDSHAKE_PROTOCOL_VERSIONS}, pinned
    assert entries.pop("default") == "$request_id"
    assert not set(MODERN_PROTOCOL_VERSIONS) & {k.strip('"') for k in entries}


def test_nginx_passes_health_images_and_demo() -> None:
    locations = nginx_blocks("location")
    for arg in ("= /health", "/images/", "/demo/"):
        assert arg in locations and "proxy_pass" in locations[arg], arg


# --- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_base_user_entrypoint_and_healthcheck() -> None:
    instructions = dockerfile()
    words = [w for w, _ in instructions]
    base = next(rest for w, rest in instructions if w == "FROM")
    m = re.fullmatch(r"python:3\.(\d+)-slim", base)
    assert m and int(m.group(1)) >= 11, base
    (entry,) = [rest for w, rest in instructions if w == "ENTRYPOINT"]
    assert json.loads(entry) == ["mcp-image-server"] and "mcp-image-server" in PYPROJECT["project"]["scripts"]
    users = [rest for w, rest in instructions if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert words.index("USER") < words.index("ENTRYPOINT")
    (health,) = [rest for w, rest in instructions if w == "HEALTHCHECK"]
    assert "/health" in health and "urllib.request" in health and "curl" not in health, health


def test_dockerfile_installs_the_lock_then_the_package() -> None:
    runs = [rest for w, rest in dockerfile() if w == "RUN"]
    lock = next(
        i for i, r in enumerate(runs) if re.search(r"pip install --no-cache-dir -r \S*requirements\.lock\.txt", r)
    )
    package = next(i for i, r in enumerate(runs) if re.search(r"pip install --no-cache-dir --no-deps \.(\s|$)", r))
    assert lock < package


def test_dockerfile_env_and_expose() -> None:
    env = docker_env()
    ours = {k for k in env if not k.startswith(("PYTHON", "PIP_"))}
    assert ours <= set(BY_NAME), f"not settings: {sorted(ours - set(BY_NAME))}"
    assert env["MCP_TRANSPORT"] == "http" and env["MCP_HOST"] == "0.0.0.0"
    exposed = [rest for w, rest in dockerfile() if w == "EXPOSE"]
    assert exposed == [env.get("MCP_PORT", FIELD_DEFAULT["MCP_PORT"])]


def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies() -> None:
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()]
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "*", "the build context is an allowlist"
    allowed = {r[1:] for r in rules if r.startswith("!")}
    copied: set[str] = set()
    for word, rest in dockerfile():
        if word == "COPY":
            copied.update(rest.split()[:-1])
    assert allowed == copied, (allowed, copied)
    assert not allowed & {".venv", ".git", "tests", ".env", "generated_images"}
    # The build needs what pyproject names: the readme and the data-files' folder.
    assert PYPROJECT["project"]["readme"] in copied
    for files in PYPROJECT["tool"]["setuptools"]["data-files"].values():
        assert {f.split("/")[0] for f in files} <= copied


# --- server.json ------------------------------------------------------------------------------


def test_server_json_identity_and_version() -> None:
    doc = server_json()
    schema = re.fullmatch(
        r"https://static\.modelcontextprotocol\.io/schemas/(\d{4}-\d{2}-\d{2})/server\.schema\.json", doc["$schema"]
    )
    assert schema and schema.group(1) == "2025-12-11", doc["$schema"]
    assert 1 <= len(doc["description"]) <= 100
    assert doc["version"] == __version__
    m = re.fullmatch(r"io\.github\.([A-Za-z0-9-]+)/([A-Za-z0-9._-]+)", doc["name"])
    assert m and m.group(2) == PYPROJECT["project"]["name"], doc["name"]
    owners = {
        urlsplit(u).path.strip("/").split("/")[0]
        for u in PYPROJECT["project"].get("urls", {}).values()
        if urlsplit(u).hostname == "github.com"
    }
    if owners:
        assert m.group(1) in owners, f"name {doc['name']} but pyproject [project.urls] say {owners}"
    for package in doc["packages"]:
        assert package["registryType"] == "pypi"
        assert package["identifier"] == PYPROJECT["project"]["name"]
        assert package["version"] == __version__


def test_server_json_offers_stdio_and_streamable_http() -> None:
    doc = server_json()
    transports = [p["transport"] for p in doc["packages"]] + list(doc.get("remotes", []))
    assert {t["type"] for t in transports} == {"stdio", "streamable-http"}
    for package in doc["packages"]:
        # The package's arguments, as the console script parses them, select its transport.
        argv = [v for a in package.get("packageArguments", []) for v in (a.get("name"), a.get("value")) if v]
        args = _parser().parse_args(argv)
        assert (args.transport or "stdio") == package["transport"]["type"].replace("streamable-", ""), argv
        url = package["transport"].get("url")
        if url:
            assert urlsplit(url).path in MCP_PATHS
            names = {v["name"] for v in package.get("environmentVariables", [])}
            assert set(re.findall(r"\{(\w+)\}", url)) <= names, url


def test_server_json_variables_are_settings_with_the_right_secret_flag() -> None:
    doc = server_json()
    seen: list[tuple[str, dict[str, Any]]] = []
    for package in doc["packages"]:
        seen += [(v["name"], v) for v in package.get("environmentVariables", [])]
        for header in package["transport"].get("headers", []):
            seen += list(header.get("variables", {}).items())
    for remote in doc.get("remotes", []):
        for header in remote.get("headers", []):
            seen += list(header.get("variables", {}).items())
    assert seen
    names = {name for name, _ in seen}
    assert {"OPENAI_API_KEY", "TENCENT_SECRET_ID", "DOUBAO_API_KEY", "MODELSCOPE_API_KEY"} <= names
    for name, var in seen:
        field = BY_NAME.get(name)
        assert field is not None, f"{name} is not a setting in config.FIELDS"
        assert var.get("isSecret", False) is field.secret, f"{name}: isSecret must be {field.secret}"
        if "default" in var:
            assert not field.secret and var["default"] == field.default, name
        for choice in [var.get("default"), *var.get("choices", [])]:
            if choice is not None:
                field.cast(choice)  # raises on a value the server would refuse
    for package in doc["packages"]:
        for header in package["transport"].get("headers", []):
            if header["name"].lower() == "authorization":
                assert header.get("isSecret") is True


@pytest.mark.parametrize("doc", [REPO / "HTTP_TRANSPORT_GUIDE.md", DEPLOY / "README.md"], ids=lambda p: p.name)
def test_docs_name_only_real_settings(doc: Path) -> None:
    text = doc.read_text()
    if doc.name == "HTTP_TRANSPORT_GUIDE.md":
        text = text.split("## Running several replicas", 1)[1]
    named = set(re.findall(r"\b(?:MCP|AWS)_[A-Z_]+\b", text))
    assert named and not named - set(BY_NAME), sorted(named - set(BY_NAME))
