"""argv + environment -> Settings -> ImageService -> the chosen transport.

Heavy imports (the MCP SDK, aiohttp, Pillow) happen only after the arguments and
settings are known, so ``--help``/``--version`` and configuration errors are instant.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Final

from . import __version__
from .config import Settings, load_settings
from .errors import ImageServerError

__all__ = ["main"]

logger = logging.getLogger("mcp_image_server")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mcp-image-server",
        description="MCP server that generates images (stdio or Streamable HTTP). "
        "Settings come from flags, then the environment, then .env, then defaults.",
    )
    p.add_argument("--transport", choices=("stdio", "http"), help="overrides MCP_TRANSPORT (default stdio)")
    p.add_argument("--host", help="overrides MCP_HOST (HTTP bind address, default 127.0.0.1)")
    p.add_argument("--port", help="overrides MCP_PORT (default 8000)")
    p.add_argument("--env-file", help="read settings from this .env file (default ./.env if present)")
    p.add_argument("--log-level", help="overrides MCP_LOG_LEVEL")
    p.add_argument("--version", action="version", version=f"mcp-image-server {__version__}")
    return p


def _setup_logging(level: str) -> None:
    # stdout belongs to the stdio protocol: every log line goes to stderr.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


IO_THREADS = 32
"""Worker threads for blocking work (file writes with fsync, image checks, renders); the
default pool (cores + 4) makes a burst of finished generations queue behind each other."""


MALLOC_ARENAS = 2
"""glibc malloc arenas for a long-running HTTP server (``MALLOC_ARENA_MAX`` overrides)."""


def limit_malloc_arenas() -> bool:
    """Cap glibc's malloc arenas, before any worker thread exists; ``False`` where that does not apply.

    glibc gives threads that allocate at once their own arena, up to eight per core. Image
    buffers are freed into the arena of whichever of the ``IO_THREADS`` workers made them and
    reused only by that worker, so resident memory creeps upward under a steady load. In
    ``benchmarks/soak.py`` (5 minutes) RSS grew 11% after warm-up with the default and 5-7%
    with two arenas, levelling off, at the same throughput. Other C libraries and platforms
    are left alone.
    """
    if sys.platform != "linux" or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        import ctypes

        m_arena_max = -8  # malloc.h
        return bool(ctypes.CDLL(None).mallopt(m_arena_max, MALLOC_ARENAS))
    except (ValueError, OSError, AttributeError):
        return False


def configure_event_loop() -> None:
    """Give the running loop a default executor sized for I/O-bound bursts, and name its library.

    anyio asks sniffio which library runs on every task, cancel scope and event it makes (the
    SDK's dispatcher makes several per request), and sniffio finds out through
    ``asyncio.current_task()`` each time: 1.7 us a call here, about a tenth of a ping's loop time.
    Setting sniffio's per-thread answer for this thread, whose loop is asyncio for the life of
    the process, makes that a lookup; worker threads keep asking.
    """
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="mcp-io")
    asyncio.get_running_loop().set_default_executor(pool)
    try:
        import sniffio
    except ImportError:  # anyio then asks asyncio directly, which is already cheap
        return
    sniffio.thread_local.name = "asyncio"


async def _serve(settings: Settings, overrides: dict[str, str], command: str) -> None:
    from .observe import configure_tracing
    from .server import build_mcp_server
    from .service import ImageService

    configure_event_loop()
    if (tracing := configure_tracing(settings.otel_endpoint, __version__)) is not None:
        logger.info("%s", tracing)
    service = ImageService(settings, overrides=overrides)
    await service.start()
    mcp = build_mcp_server(service)
    try:
        if settings.role == "worker":
            await _run_worker()
        elif settings.transport == "http":
            from .transports.http import run_http

            await run_http(service, mcp, settings)
        else:
            from .transports.stdio import run_stdio

            await run_stdio(mcp, command)
    finally:
        await service.aclose()
        _forget_event_loop()


def _forget_event_loop() -> None:
    """Undo ``configure_event_loop``'s sniffio answer: the thread may host another library's loop next."""
    with contextlib.suppress(ImportError):
        import sniffio

        sniffio.thread_local.name = None


async def _run_worker() -> None:
    """MCP_ROLE=worker: no transport; the job manager takes queued jobs until SIGTERM or Ctrl-C."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logger.info("worker started: taking generation jobs from the shared queue (no HTTP)")
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    logger.info("worker stopping: handing its jobs over (MCP_DRAIN_SECONDS)")


MISSING_DEPENDENCY: Final = (
    "mcp-image-server: {python} lacks the package's dependencies (no module named {name!r}). From a "
    "checkout run ./mcp-server instead (it installs them into .venv on first use), or install them: "
    "{python} -m pip install -r requirements.lock.txt ."
)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except ModuleNotFoundError as exc:
        if not exc.name or exc.name.partition(".")[0] == "mcp_image_server":
            raise
        print(MISSING_DEPENDENCY.format(python=sys.executable, name=exc.name), file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    overrides = {
        env: value
        for env, value in (
            ("MCP_TRANSPORT", args.transport),
            ("MCP_HOST", args.host),
            ("MCP_PORT", args.port),
            ("MCP_LOG_LEVEL", args.log_level),
        )
        if value is not None
    }
    try:
        settings = load_settings(os.environ, args.env_file, overrides)
    except ImageServerError as exc:
        print(f"mcp-image-server: {exc.message}", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level)
    # A shared, long-running service; a stdio server lives as long as an IDE session.
    if settings.transport == "http" and limit_malloc_arenas():
        logger.debug("glibc malloc arenas capped at %d (MALLOC_ARENA_MAX overrides)", MALLOC_ARENAS)
    command = os.environ.get("MCP_IMAGE_SERVER_COMMAND", "mcp-image-server")
    try:
        asyncio.run(_serve(settings, overrides, command))
    except ImageServerError as exc:
        print(f"mcp-image-server: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
