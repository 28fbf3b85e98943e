"""Named tokens with roles and limits (MCP_TOKENS_FILE), through the SDK client against a real server.

An admin (MCP_AUTH_TOKEN) and users from the file: every cross-tenant attempt on jobs, images,
``images://`` and idempotency keys reads as not found; admin-only tools are refused to users;
each limit runs out for one user while the others are unaffected, and what a refused call would
have reserved is never counted. Run on memory and on Redis + S3 (``backends``), so the limits
are counted in the shared state.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mcp_image_server.tenants import load_tokens_file

pytestmark = pytest.mark.timeout(180)

ADMIN = "admin-token-0123456789"
ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789ab"
CAROL = "carol-token-0123456789"
DAVE = "dave-token-0123456789a"
SMALL = {"provider": "local", "resolution": "64x64", "inline": "none"}
BIG = {"provider": "local", "resolution": "2048x2048", "n": 4, "inline": "none", "wait_seconds": 0}


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


TOKENS = f"""
[[tokens]]
name = "alice"
token_sha256 = "{_sha(ALICE)}"
role = "user"
images_per_day = 3

[[tokens]]
name = "bob"
token_sha256 = "{_sha(BOB)}"
monthly_budget_usd = 0.025
providers = ["local"]

[[tokens]]
name = "carol"
token = "{CAROL}"
requests_per_minute = 5

[[tokens]]
name = "dave"
token_sha256 = "{_sha(DAVE)}"
max_concurrent_jobs = 1
images_per_day = 8
"""

PRICES = """
[[prices]]
provider = "local"
usd = 0.01
source = "test"
date = "2026-12-07"
"""


@asynccontextmanager
async def _client(url: str, token: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def _call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert result.structured_content is not None, result
    return result.structured_content


def _code(out: dict[str, Any]) -> str | None:
    return out["error"]["code"] if out.get("error") else None


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "tokens.toml").write_text(TOKENS)
    (tmp_path / "prices.toml").write_text(PRICES)
    return {"MCP_TOKENS_FILE": str(tmp_path / "tokens.toml"), "MCP_PRICES_FILE": str(tmp_path / "prices.toml")}


@pytest.mark.usefixtures("backends")
async def test_tenants_are_isolated_and_each_limit_runs_out_alone(
    http_server: Any, files: dict[str, str], tmp_path: Path
) -> None:
    async with (
        http_server(env=files, token=ADMIN) as url,
        _client(url, ADMIN) as admin,
        _client(url, ALICE) as alice,
        _client(url, BOB) as bob,
        _client(url, DAVE) as dave,
    ):
        # --- isolation ------------------------------------------------------------------------
        made = await _call(alice, "generate_image", prompt="a red fox", idempotency_key="k1", **SMALL)
        assert made["ok"], made
        job_id, image_id = made["job_id"], made["images"][0]["image_id"]
        assert made["cost_estimate_usd"] == pytest.approx(0.01)
        assert made["images"][0]["cost_estimate_usd"] == pytest.approx(0.01)

        unknown = "0" * 32
        theirs = await _call(bob, "get_image_data", image_id=image_id)
        nobody = await _call(bob, "get_image_data", image_id=unknown)
        assert _code(theirs) == _code(nobody) == "image_not_found"
        assert theirs["error"]["message"].replace(image_id, unknown) == nobody["error"]["message"]
        with pytest.raises(MCPError) as refused:
            await bob.read_resource(f"images://{image_id}")
        assert "no image with id" in str(refused.value)
        for tool in ("get_generation", "cancel_generation"):
            out = await _call(bob, tool, job_id=job_id)
            assert _code(out) == "job_not_found", out
        listed = await _call(bob, "list_generations")
        assert job_id not in [j["job_id"] for j in listed["jobs"]]
        # The same key and arguments from another tenant start that tenant's own job.
        again = await _call(bob, "generate_image", prompt="a red fox", idempotency_key="k1", **SMALL)
        assert again["ok"] and again["job_id"] != job_id
        mine = await _call(alice, "generate_image", prompt="a red fox", idempotency_key="k1", **SMALL)
        assert mine["job_id"] == job_id  # a repeat: charged nothing more (images_per_day below)

        # --- roles ----------------------------------------------------------------------------
        for out in (await _call(bob, "reload_config"), await _call(bob, "list_generations", all=True)):
            assert _code(out) == "forbidden", out
        everyone = await _call(admin, "list_generations", all=True)
        assert {job_id, again["job_id"]} <= {j["job_id"] for j in everyone["jobs"]}
        assert (await _call(admin, "get_image_data", image_id=image_id))["ok"]
        assert (await _call(admin, "get_generation", job_id=job_id))["ok"]
        assert (await _call(alice, "get_image_data", image_id=image_id))["ok"]

        # --- images_per_day: alice has used 1 of 3 ----------------------------------------------
        out = await _call(alice, "generate_image", prompt="two", n=2, **SMALL)
        assert out["ok"], out
        over = await _call(alice, "generate_image", prompt="one more", **SMALL)
        assert _code(over) == "quota_exceeded"
        details = over["error"]["details"]
        assert (details["limit"], details["used"], details["limit_name"]) == (3, 3, "images_per_day")
        assert details["resets_at"].endswith("T00:00:00Z")
        assert (await _call(dave, "generate_image", prompt="unaffected", **SMALL))["ok"]

        # --- providers and the budget: bob may use local only, USD 0.025 a month ----------------
        out = await _call(bob, "generate_image", prompt="x", provider="openai", inline="none")
        assert _code(out) in ("provider_not_allowed", "provider_not_configured"), out
        spent = 0.01  # the repeat above
        out = await _call(bob, "generate_image", prompt="second", **SMALL)
        assert out["ok"], out
        spent += 0.01
        broke = await _call(bob, "generate_image", prompt="third", **SMALL)
        assert _code(broke) == "budget_exceeded", broke
        assert broke["error"]["details"]["used"] == pytest.approx(spent)
        assert broke["error"]["details"]["limit"] == pytest.approx(0.025)
        assert (await _call(dave, "generate_image", prompt="still fine", **SMALL))["ok"]

        # --- max_concurrent_jobs = 1, and a cancelled job gives its images back ----------------
        first = await _call(dave, "generate_image", prompt="slow", **BIG)
        assert first["ok"] and first["status"] != "succeeded", first
        second = await _call(dave, "generate_image", prompt="refused", **SMALL)
        assert _code(second) == "quota_exceeded", second
        assert second["error"]["details"]["limit_name"] == "max_concurrent_jobs"
        assert second["error"]["details"]["resets_at"] is None
        stopped = await _call(dave, "cancel_generation", job_id=first["job_id"])
        assert stopped["jobs"][0]["status"] == "cancelled", stopped
        # dave has made 2 images of 8 today; the cancelled 4 came back, so 4 + 2 fit again.
        done = await _call(dave, "generate_image", prompt="slow again", **{**BIG, "wait_seconds": 120})
        assert done["ok"] and done["status"] == "succeeded", done
        out = await _call(dave, "generate_image", prompt="last two", n=2, **SMALL)
        assert out["ok"], out
        assert _code(await _call(dave, "generate_image", prompt="ninth", **SMALL)) == "quota_exceeded"

        # --- reload: a bad file is refused with line and key, the old table stays --------------
        Path(files["MCP_TOKENS_FILE"]).write_text(TOKENS.replace('role = "user"', 'role = "owner"'))
        out = await _call(admin, "reload_config")
        assert _code(out) == "config_error"
        assert "line 2" in out["error"]["message"] and "'role'" in out["error"]["message"], out
        assert (await _call(alice, "list_generations"))["ok"]

    log = (tmp_path / "http-server.log").read_text()
    for secret in (ADMIN, ALICE, BOB, CAROL, DAVE):
        assert secret not in log
    assert "carol" in log and "plain text" in log  # the start-up warning for a plain token


async def test_requests_per_minute_gives_429_with_retry_after(http_server: Any, files: dict[str, str]) -> None:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with http_server(env=files, token=ADMIN) as url, httpx2.AsyncClient(timeout=30) as http:
        headers = {"Authorization": f"Bearer {CAROL}", "Accept": "application/json, text/event-stream",
                   "MCP-Protocol-Version": "2026-07-28"}
        statuses = []
        for _ in range(11):  # 5 a minute: a 429 comes by the 11th even if a minute boundary passes
            resp = await http.post(url, json=ping, headers=headers)
            statuses.append(resp.status_code)
            if resp.status_code == 429:
                break
        assert statuses[-1] == 429, statuses
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        assert "requests_per_minute" in resp.text and CAROL not in resp.text
        other = await http.post(url, json=ping, headers={**headers, "Authorization": f"Bearer {ALICE}"})
        assert other.status_code != 429


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ('[[tokens]]\nname = "a"\n', "line 1: give exactly one of the keys 'token_sha256'"),
        (f'[[tokens]]\nname = "a"\ntoken_sha256 = "{"0" * 64}"\n\n[[tokens]]\nname = "b"\ntoken_sha256 = "xyz"\n',
         "line 5: key 'token_sha256' must be 64 hex characters"),
        (f'[[tokens]]\nname = "a"\ntoken_sha256 = "{"0" * 64}"\nimages_per_day = -1\n',
         "line 1: key 'images_per_day' must be a positive integer"),
        (f'[[tokens]]\nname = "a"\ntoken_sha256 = "{"0" * 64}"\ncolour = "red"\n', "unknown key 'colour'"),
        (f'[[tokens]]\nname = "a"\ntoken_sha256 = "{"0" * 64}"\n[[tokens]]\nname = "a"\ntoken_sha256 = "{"1" * 64}"\n',
         "line 4: key 'name': 'a' is used twice"),
        ("[[tokens]\n", "is not valid TOML"),
    ],
)
def test_a_bad_tokens_file_names_the_line_and_key(tmp_path: Path, text: str, wanted: str) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        load_tokens_file(str(path))
    assert wanted in str(err.value), str(err.value)
