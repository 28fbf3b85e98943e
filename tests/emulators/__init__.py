"""Wire-protocol emulators of the image vendors, for tests and for manual runs.

Every emulator is an aiohttp app on ``127.0.0.1`` that the real vendor SDK talks to. The API
is the same for all four::

    async with HunyuanEmulator(secret_id="AKID...", secret_key="...") as emu:
        emu.base_url                       # point the SDK / Settings here (also emu.env())
        emu.fail_next("rate_limit", times=2)   # next 2 requests fail, the third succeeds
        emu.fail_always("hang")            # until emu.clear_faults(); emu.release() frees hung requests
        emu.requests                       # RecordedRequest(route, method, path, headers, body, ...)

Fault kinds (each emulator lists its own in ``supported_faults``): ``rate_limit``, ``quota``,
``server_error``, ``unavailable``, ``hang``, ``malformed``, ``moderation``, ``invalid_argument``,
``auth``, ``unknown_model``, ``job_failed``, and the result-byte faults ``not_image``, ``corrupt``,
``truncated``, ``oversized``, and ``stall`` (headers and half the body, then nothing until
``release()``; ``on="files"`` stalls a result download). Run ``python -m tests.emulators`` to serve
all four by hand.
"""

import sys

try:
    from .common import Emulator, Fault, RecordedRequest, render_image
    from .doubao import DoubaoEmulator
    from .hunyuan import HunyuanEmulator
    from .modelscope import ModelScopeEmulator
    from .openai import OpenAIEmulator
except ModuleNotFoundError as exc:
    if "tests.emulators" not in sys.orig_argv:  # imported by the tests: a real error
        raise
    # python -m tests.emulators with a Python that lacks the dependencies: say what to run instead.
    print(f"tests.emulators: {sys.executable} lacks the dependencies (no module named {exc.name!r}); "
          "run ./mcp-server emulators instead (it installs them into .venv on first use)", file=sys.stderr)
    sys.exit(2)

__all__ = [
    "DoubaoEmulator",
    "Emulator",
    "Fault",
    "HunyuanEmulator",
    "ModelScopeEmulator",
    "OpenAIEmulator",
    "RecordedRequest",
    "render_image",
]
