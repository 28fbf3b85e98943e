"""The 30 s version of benchmarks/soak.py: 50 sessions against the HTTP server, zero errors, no leaks."""

from __future__ import annotations

import os

import pytest

from benchmarks.soak import run

pytestmark = pytest.mark.timeout(240)


async def test_a_30_second_soak_has_no_errors_and_leaks_nothing() -> None:
    figures = await run(duration=float(os.environ.get("SOAK_SECONDS", "30")), sessions=50, quiet=True)
    print("\nsoak:", figures)
    assert figures["errors"] == 0, figures["error_samples"]
    assert figures["operations"] > 500
    assert figures["fd_leak"] <= 0, figures["fds_idle_warm_end_after"]
    assert figures["rss_growth"] <= 0.10, figures["rss_kib_idle_warm_end"]
