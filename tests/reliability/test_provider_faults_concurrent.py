"""Every emulator fault, under concurrency, through the real server over HTTP.

All four vendor emulators and the real server (both eras over HTTP, in-process) run at once.
Faults are queued with ``fail_next(kind, times=k)`` while several calls per provider are in
flight, waves of them across all providers at once. Which call meets a fault is up to the
scheduler, so each wave checks the multiset of outcomes: exactly ``k`` calls end with the fault's
stable error code, the others succeed. No call may hang (every call is bounded); a connection
that stalls mid-body ends as ``provider_timeout`` within the configured timeout; spoiled result
bytes end as ``bad_image_data``. Afterwards the save dir holds exactly the successful images,
each complete and with its record, and the server still serves both eras.
"""

from __future__ import annotations

import asyncio
import collections
import io
import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from mcp_image_server.store import FILE_NAME_RE
from tests.emulators import DoubaoEmulator, Emulator, HunyuanEmulator, ModelScopeEmulator, OpenAIEmulator

from .support import Served, legacy_call, modern_call, open_session, reply_of, serve, tool_result

pytestmark = pytest.mark.timeout(120)

TOKEN = "faults-token-9e2"
KEYS = {
    "TENCENT_SECRET_ID": "AKID-FAKE-faults00000001",
    "TENCENT_SECRET_KEY": "FAKE-faults-tencent-key",
    "OPENAI_API_KEY": "sk-FAKE-faults-openai",
    "DOUBAO_API_KEY": "ark-FAKE-faults-doubao",
    "MODELSCOPE_API_KEY": "ms-FAKE-faults-modelscope",
}
PROVIDER_TIMEOUT = 2.0
"""``MCP_<PROVIDER>_TIMEOUT``: a hung or stalled vendor call ends as ``provider_timeout`` after this."""
DOWNLOAD_TIMEOUT = 1.0
"""``MCP_DOWNLOAD_TIMEOUT`` (its minimum): a stalled result download ends after this."""
SLACK = 3.0
"""Scheduling slack on top of a timeout, for a loaded 2-core machine."""
CALL_BOUND = 30.0
"""No call may take longer than this, whatever its fault."""
PROVIDERS = ("hunyuan", "openai", "doubao", "modelscope")

EXPECTED: dict[str, dict[str, str]] = {
    # provider -> fault -> the stable error code the call must end with
    "hunyuan": {
        "rate_limit": "rate_limited",
        "internal_error": "provider_unavailable",
        "engine_busy": "rate_limited",
        "moderation": "content_rejected",
        "invalid_argument": "provider_invalid_argument",
        "auth": "auth_failed",
        "unsupported_region": "provider_invalid_argument",
        "server_error": "provider_unavailable",
        "malformed": "provider_unavailable",
        "missing_request_id": "provider_unavailable",
        "job_failed": "provider_unavailable",
        "not_image": "bad_image_data",
        "corrupt": "bad_image_data",
        "truncated": "bad_image_data",
        "oversized": "bad_image_data",
        "hang": "provider_timeout",
        "stall": "provider_timeout",
    },
    "openai": {
        "rate_limit": "rate_limited",
        "quota": "provider_error",
        "server_error": "provider_unavailable",
        "unavailable": "provider_unavailable",
        "moderation": "content_rejected",
        "invalid_argument": "provider_invalid_argument",
        "auth": "auth_failed",
        "unknown_model": "model_not_found",
        "malformed": "provider_unavailable",
        "not_image": "bad_image_data",
        "corrupt": "bad_image_data",
        "truncated": "bad_image_data",
        "oversized": "bad_image_data",
        "hang": "provider_timeout",
        "stall": "provider_timeout",
    },
    "doubao": {
        "rate_limit": "rate_limited",
        "quota": "provider_error",
        "server_error": "provider_unavailable",
        "unavailable": "provider_unavailable",
        "moderation": "content_rejected",
        "invalid_argument": "provider_invalid_argument",
        "auth": "auth_failed",
        "unknown_model": "model_not_found",
        "model_closed": "model_not_found",
        "output_moderation": "content_rejected",
        "malformed": "provider_unavailable",
        "not_image": "bad_image_data",
        "corrupt": "bad_image_data",
        "truncated": "bad_image_data",
        "oversized": "bad_image_data",
        "hang": "provider_timeout",
        "stall": "provider_timeout",
    },
    "modelscope": {
        "rate_limit": "rate_limited",
        "quota": "provider_error",
        "server_error": "provider_unavailable",
        "unavailable": "provider_unavailable",
        "moderation": "content_rejected",
        "invalid_argument": "provider_invalid_argument",
        "auth": "auth_failed",
        "unknown_model": "model_not_found",
        "job_failed": "provider_unavailable",
        "malformed": "provider_unavailable",
        "not_image": "bad_image_data",
        "corrupt": "bad_image_data",
        "truncated": "bad_image_data",
        "oversized": "bad_image_data",
        "hang": "provider_timeout",
        "stall": "provider_timeout",
    },
}
STALLED_DOWNLOAD = "stall-download"
"""Pseudo-fault: ``stall`` on the ``files`` route (the result download, not the API call)."""
DECLARED_OVERSIZE = "oversized-declared"
"""Pseudo-fault: ``oversized`` with an honest Content-Length (refused before reading the body)."""
for _p in ("hunyuan", "modelscope"):  # the providers that download results by URL
    EXPECTED[_p][STALLED_DOWNLOAD] = "provider_timeout"
    EXPECTED[_p][DECLARED_OVERSIZE] = "bad_image_data"
SLOW = frozenset({"hang", "stall", STALLED_DOWNLOAD})
"""Faults that last a timeout: run together in one wave so the suite pays for them once."""


@dataclass
class Rig:
    served: Served
    emus: dict[str, Any]
    session: str

    @property
    def port(self) -> int:
        return self.served.port


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with AsyncExitStack() as stack:
        emus: dict[str, Any] = {
            "hunyuan": HunyuanEmulator(secret_id=KEYS["TENCENT_SECRET_ID"], secret_key=KEYS["TENCENT_SECRET_KEY"]),
            "openai": OpenAIEmulator(api_key=KEYS["OPENAI_API_KEY"]),
            "doubao": DoubaoEmulator(api_key=KEYS["DOUBAO_API_KEY"]),
            "modelscope": ModelScopeEmulator(api_key=KEYS["MODELSCOPE_API_KEY"]),
        }
        env = {"MCP_AUTH_TOKEN": TOKEN, **KEYS}
        for emu in emus.values():
            await stack.enter_async_context(emu)
            stack.callback(emu.release)
            env.update(emu.env())
        for name in PROVIDERS:
            env[f"MCP_{name.upper()}_TIMEOUT"] = str(PROVIDER_TIMEOUT)
            env[f"MCP_{name.upper()}_MAX_CONCURRENCY"] = "8"
        env.update(
            {
                "MCP_PROVIDER_MAX_ATTEMPTS": "1",  # one vendor request per call: k faults fail exactly k calls
                "MCP_HUNYUAN_POLL_INTERVAL": "0.02",
                "MCP_MODELSCOPE_POLL_INTERVAL": "0.02",
                "MCP_DOWNLOAD_TIMEOUT": str(DOWNLOAD_TIMEOUT),
                "MCP_DOWNLOAD_MAX_BYTES": "400000",
                "MCP_LOG_LEVEL": "WARNING",
            }
        )
        served = await stack.enter_async_context(serve(tmp_path, env))
        session = await open_session(served.port, TOKEN)
        yield Rig(served, emus, session)


_rid = itertools.count()


@dataclass(frozen=True)
class Outcome:
    code: str
    """``"ok"`` or the stable error code."""
    seconds: float
    message: str = ""


async def generate(rig: Rig, provider: str, era: str) -> Outcome:
    """One bounded ``generate_image`` call and how it ended."""
    rid = next(_rid)
    args = {
        "name": "generate_image",
        "arguments": {"prompt": f"fault wave {rid}", "provider": provider, "inline": "none", "wait_seconds": 60},
    }
    started = time.monotonic()
    async with asyncio.timeout(CALL_BOUND):
        if era == "modern":
            resp = await modern_call(rig.port, "tools/call", args, token=TOKEN, rid=rid, accept="application/json")
        else:
            resp = await legacy_call(rig.port, rig.session, "tools/call", args, token=TOKEN, rid=rid)
    elapsed = time.monotonic() - started
    assert resp.status == 200, resp.text
    result = tool_result(resp)
    if result["ok"]:
        assert result["status"] == "succeeded" and result["images"][0]["provider"] == provider, result
        return Outcome("ok", elapsed)
    error = result["error"]
    assert error["details"].get("provider") == provider, result
    for secret in KEYS.values():
        assert secret not in json.dumps(result)
    return Outcome(error["code"], elapsed, error["message"])


def _queue(emu: Any, fault: str, times: int) -> None:
    if fault == STALLED_DOWNLOAD:
        emu.fail_next("stall", times=times, on="files")
    elif fault == DECLARED_OVERSIZE:
        emu.fail_next("oversized", times=times, declare_length=True)
    else:
        emu.fail_next(fault, times=times)


Wave = dict[str, list[str]]
"""provider -> the faults queued for it in one wave (each ``times=FAULTY``)."""
FAULTY = 2
"""``fail_next(..., times=FAULTY)``: how many calls each queued fault spoils."""


def _waves() -> list[Wave]:
    """One wave with every slow fault of every provider, then the fast faults walked in step."""
    slow: Wave = {p: sorted(f for f in EXPECTED[p] if f in SLOW) for p in PROVIDERS}
    fast = [[(p, f) for f in sorted(EXPECTED[p]) if f not in SLOW] for p in PROVIDERS]
    waves = [slow]
    for step in itertools.zip_longest(*fast):
        waves.append({pf[0]: [pf[1]] for pf in step if pf is not None})
    return waves


async def _run_wave(rig: Rig, wave: Wave, stats: collections.Counter[str]) -> None:
    """Queue the wave's faults, run ``FAULTY`` calls per fault plus one clean call per provider,
    all at once (eras alternating), and check every provider's multiset of outcomes."""
    for provider, faults in wave.items():
        for fault in faults:
            _queue(rig.emus[provider], fault, FAULTY)
    calls = [(p, i) for p, faults in wave.items() for i in range(FAULTY * len(faults) + 1)]
    results = await asyncio.gather(*(generate(rig, p, "modern" if i % 2 else "legacy") for p, i in calls))
    for emu in rig.emus.values():
        emu.release()  # requests held by hang/stall go on (their clients are long gone)
        emu.clear_faults()
    outcomes: dict[str, list[Outcome]] = collections.defaultdict(list)
    for (provider, _), result in zip(calls, results, strict=True):
        outcomes[provider].append(result)
    for provider, faults in wave.items():
        expected = sorted([EXPECTED[provider][f] for f in faults] * FAULTY + ["ok"])
        got = sorted(o.code for o in outcomes[provider])
        assert got == expected, (provider, faults, got, [o.message for o in outcomes[provider]])
        downloads = [o for o in outcomes[provider] if o.code == "provider_timeout" and "download" in o.message]
        assert len(downloads) == FAULTY * faults.count(STALLED_DOWNLOAD), (provider, downloads)
        for o in outcomes[provider]:
            stats[o.code] += 1
            if o.code == "provider_timeout":  # hung or stalled: over within the configured timeout
                limit = DOWNLOAD_TIMEOUT if o in downloads else PROVIDER_TIMEOUT
                assert limit <= o.seconds <= limit + SLACK, (provider, o)
            else:
                assert o.seconds <= SLACK, (provider, faults, o)
    stats["calls"] += len(calls)
    stats["concurrent"] = max(stats["concurrent"], len(calls))


def _check_save_dir(served: Served, successes: int) -> None:
    """Exactly the successful images: complete, each with its record, nothing half-written."""
    save = served.save_dir
    entries = sorted(p.name for p in save.iterdir() if p.name != ".records")
    assert not [e for e in entries if e.startswith(".tmp-")], entries
    assert all(FILE_NAME_RE.match(e) for e in entries), entries
    assert len(entries) == successes, (len(entries), successes)
    for name in entries:
        data = (save / name).read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # a full decode: a truncated file fails here
        match = FILE_NAME_RE.match(name)
        assert match is not None
        record = json.loads((save / ".records" / f"{match['id']}.json").read_text())
        assert record["size_bytes"] == len(data)


async def test_every_fault_under_concurrency_gets_its_code_and_nothing_hangs(rig: Rig) -> None:
    waves = _waves()
    stats: collections.Counter[str] = collections.Counter()
    for wave in waves:
        await _run_wave(rig, wave, stats)
    # The server still serves, in both eras, and nothing half-written is left behind.
    after = await asyncio.gather(*(generate(rig, p, era) for p in PROVIDERS for era in ("modern", "legacy")))
    assert [o.code for o in after] == ["ok"] * 8
    listed = await modern_call(rig.port, "tools/list", token=TOKEN)
    assert "result" in reply_of(listed)
    assert (await legacy_call(rig.port, rig.session, "ping", token=TOKEN)).status == 200
    _check_save_dir(rig.served, stats["ok"] + 8)
    kinds = sum(len(v) for v in EXPECTED.values())
    faulted = stats["calls"] - stats["ok"]
    print(
        f"\nprovider faults: {kinds} (provider, fault) kinds in {len(waves)} waves of up to {stats['concurrent']} "
        f"concurrent calls across {len(PROVIDERS)} providers; {stats['calls']} calls, {faulted} faulted calls "
        f"ended with their stable code, {stats['ok']} succeeded alongside"
    )


def test_every_fault_an_emulator_supports_has_an_expected_code() -> None:
    """A fault kind added to an emulator must be added here too, with the code it must produce."""
    classes: dict[str, type[Emulator]] = {
        "hunyuan": HunyuanEmulator,
        "openai": OpenAIEmulator,
        "doubao": DoubaoEmulator,
        "modelscope": ModelScopeEmulator,
    }
    for provider, cls in classes.items():
        pseudo = {STALLED_DOWNLOAD, DECLARED_OVERSIZE}
        assert set(cls.supported_faults) == set(EXPECTED[provider]) - pseudo, provider
