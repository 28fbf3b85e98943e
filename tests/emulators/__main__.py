"""Serve all five emulators until Ctrl-C and print the variables that point the server at them.

    python -m tests.emulators [--base-port 18080] [--job-polls 2]

``--base-port N`` uses ports N..N+4 (Hunyuan, OpenAI, Doubao, ModelScope, Gemini); 0 picks free ports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

from .common import Emulator
from .doubao import DoubaoEmulator
from .gemini import GeminiEmulator
from .hunyuan import HunyuanEmulator
from .modelscope import ModelScopeEmulator
from .openai import OpenAIEmulator

# Recognisable fakes: never real credentials.
FAKE_KEYS = {
    "tencent_id": "AKID-FAKE-emulator0001",
    "tencent_key": "FAKE-tencent-emulator-key",
    "openai": "sk-FAKE-openai-emulator",
    "doubao": "ark-FAKE-doubao-emulator",
    "modelscope": "ms-FAKE-modelscope-emulator",
    "gemini": "AIza-FAKE-gemini-emulator",
}


def build(base_port: int, job_polls: int) -> list[Emulator]:
    port = (lambda i: base_port + i) if base_port else (lambda i: 0)
    return [
        HunyuanEmulator(
            secret_id=FAKE_KEYS["tencent_id"], secret_key=FAKE_KEYS["tencent_key"], port=port(0), job_polls=job_polls
        ),
        OpenAIEmulator(api_key=FAKE_KEYS["openai"], port=port(1)),
        DoubaoEmulator(api_key=FAKE_KEYS["doubao"], port=port(2)),
        ModelScopeEmulator(api_key=FAKE_KEYS["modelscope"], port=port(3), job_polls=job_polls),
        GeminiEmulator(api_key=FAKE_KEYS["gemini"], port=port(4)),
    ]


async def serve(emulators: Sequence[Emulator]) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for emu in emulators:
            await stack.enter_async_context(emu)
        print("# emulators ready; paste into the server's environment:", flush=True)
        for emu in emulators:
            for key, value in emu.env().items():
                print(f"export {key}={value}")
        print("# Ctrl-C to stop", flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.emulators", description=__doc__.splitlines()[0])
    parser.add_argument("--base-port", type=int, default=0, help="first of five consecutive ports (0: free ports)")
    parser.add_argument("--job-polls", type=int, default=2, help="polls before Hunyuan/ModelScope jobs finish")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(build(args.base_port, args.job_polls)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
