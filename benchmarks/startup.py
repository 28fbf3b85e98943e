"""stdio start-up: spawn -> initialize result, ours vs a minimal SDK ``MCPServer``, same process tree.

Run by hand:
  .venv/bin/python benchmarks/startup.py [--runs 10] [--baseline DIR]
      spawn -> initialize of ours and of the reference, interleaved, beside two floors
      (``python -c pass`` and ``python -c "import mcp.server.mcpserver"``, spawn -> exit).
      Prints median/min/max wall time, the CPU time of each child (spawn -> exit, so it also
      counts the shutdown; on a busy machine it varies far less than wall time) and the ratios
      ours/reference (goal: <= 1.3). ``--baseline DIR`` adds another ``mcp_image_server``
      (DIR holds the package, e.g. a ``git worktree`` of the previous commit): before/after in one run.
  .venv/bin/python benchmarks/startup.py --breakdown [--runs 5]
      runs ours and the reference under ``-X importtime`` and splits the imports done *before
      the initialize reply was written* by top-level package and by SDK part, names what ours
      imports that the reference does not, and what the first reply did not need (Pillow,
      aiohttp, vendor SDKs...) if any was imported; then times the import stages in one process
      without importtime's overhead (CPU ms), down to the floor the SDK sets.

The child's stderr shares the stdout pipe in ``--breakdown``: writes to one pipe keep their
order, so every ``import time:`` line that precedes the reply line was printed before the
reply was written, with no hook in the server. ``-X importtime`` does not see modules loaded
with ``importlib.import_module`` (tests/test_startup_imports.py watches ``sys.meta_path`` instead).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parent.parent

REFERENCE: Final = """
from mcp.server.mcpserver import MCPServer
mcp = MCPServer("reference")

@mcp.tool()
def add(a: int, b: int) -> int:
    return a + b

mcp.run("stdio")
"""

INIT: Final = json.dumps({
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
}) + "\n"

HEAVY: Final = (
    "PIL", "aiohttp", "openai", "google", "tencentcloud", "volcenginesdkarkruntime", "redis", "jwt",
    "numpy", "boto3", "botocore", "obstore", "opentelemetry", "prometheus_client", "httpx", "httpx2",
    "starlette", "uvicorn", "sse_starlette",
)
"""Top-level packages worth naming when they are imported before the first reply."""

STDLIB: Final = "(stdlib)"

STAGES: Final = (
    ("asyncio + anyio", ("asyncio", "anyio")),
    ("pydantic", ("pydantic", "pydantic.main", "pydantic_core")),
    ("mcp_types (protocol models)", ("mcp_types",)),
    ("mcp_types.methods (per-method models)", ("mcp_types.methods",)),
    ("HTTP stack (httpx2 starlette uvicorn sse_starlette)", ("httpx2", "starlette.applications", "uvicorn",
                                                             "sse_starlette")),
    ("opentelemetry + cryptography", ("opentelemetry.trace", "cryptography")),
    ("rest of `import mcp` (client + server)", ("mcp",)),
    ("mcp.server.mcpserver (after mcp)", ("mcp.server.mcpserver",)),
    ("rich (MCPServer() calls configure_logging)", ("rich.console", "rich.logging")),
    ("ours: cli + config", ("mcp_image_server.cli",)),
    ("ours: server + service + stdio", ("mcp_image_server.server", "mcp_image_server.service",
                                        "mcp_image_server.transports.stdio")),
)
"""Import stages in the order that attributes each one's cost to it (a stage counts only what
the stages before it did not already import); CPU time, without importtime's overhead."""

_STAGES_CHILD: Final = """
import importlib, json, sys, time
out = []
for label, modules in json.loads(sys.argv[1]):
    t = time.process_time()
    for m in modules:
        importlib.import_module(m)
    out.append([label, time.process_time() - t])
print(json.dumps(out))
"""


@dataclass(frozen=True, slots=True)
class Import:
    """One ``-X importtime`` line: who, how deep, own and cumulative microseconds."""

    name: str
    level: int
    self_us: int
    cumulative_us: int


def parse_importtime(lines: Iterable[str]) -> list[Import]:
    """The ``import time:`` lines among ``lines`` (others, e.g. log lines, are skipped)."""
    out: list[Import] = []
    for line in lines:
        if not line.startswith("import time:") or "imported package" in line:
            continue
        own, cumulative, field = line.removeprefix("import time:").split("|", 2)
        name = field.rstrip("\n")
        indent = len(name) - len(name.lstrip(" ")) - 1  # one space follows the bar
        out.append(Import(name.strip(), indent // 2, int(own), int(cumulative)))
    return out


def package_of(module: str) -> str:
    top = module.partition(".")[0]
    return STDLIB if top in sys.stdlib_module_names or top.startswith("_") and top != "_cffi_backend" else top


def sdk_part_of(module: str) -> str | None:
    """``mcp.server.auth``, ``mcp.client``, ``mcp_types._v2025_11_25``...: where inside the SDK, or None."""
    parts = module.split(".")
    if parts[0] == "mcp_types":
        return ".".join(parts[:2])
    if parts[0] == "mcp":
        return ".".join(parts[:3] if len(parts) > 2 and parts[1] == "server" else parts[:2])
    return None


def by_package(imports: Sequence[Import]) -> dict[str, tuple[int, int]]:
    """Per top-level package: (own time, inclusive time), microseconds.

    Own time is the sum of the package's modules' self times, so the column adds up to the
    total. Inclusive time is the cumulative time of the package's outermost imports (those
    not imported by a module of the same package), so it also counts what the package pulls
    in (``mcp`` includes ``pydantic``) and the column does not add up.
    """
    own: dict[str, int] = defaultdict(int)
    inclusive: dict[str, int] = defaultdict(int)
    # importtime prints a module after its imports: the parent of a line at level L is the
    # next line at level L - 1, so walk backwards keeping the open ancestor per level.
    ancestors: list[str] = []
    for imp in reversed(imports):
        del ancestors[imp.level:]
        package = package_of(imp.name)
        own[package] += imp.self_us
        parent = ancestors[-1] if ancestors else None
        if parent is None or package_of(parent) != package:
            inclusive[package] += imp.cumulative_us
        ancestors.append(imp.name)
    return {p: (own[p], inclusive[p]) for p in own}


async def imports_before_initialize(argv: Sequence[str], env: dict[str, str]) -> tuple[list[Import], float]:
    """Spawn ``argv`` under ``-X importtime``; the imports printed before the initialize reply, and the wall time."""
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        argv[0], "-X", "importtime", *argv[1:], env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, limit=1 << 22,
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write(INIT.encode())
    await proc.stdin.drain()
    seen: list[str] = []
    async with asyncio.timeout(60):
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                raise RuntimeError(f"{argv} exited before replying:\n" + "".join(seen[-20:]))
            line = raw.decode("utf-8", "replace")
            head, sep, _ = line.partition('{"jsonrpc"')
            if sep:
                seen.append(head)  # an import line may share the pipe's last line with the reply
                break
            seen.append(line)
    elapsed = time.perf_counter() - start
    proc.stdin.close()
    await proc.communicate()
    return parse_importtime(seen), elapsed


async def spawn_to_initialize(argv: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds from spawn to the initialize result, and the child's CPU seconds (to its exit)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write(INIT.encode())
    await proc.stdin.drain()
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    elapsed = time.perf_counter() - start
    assert b'"result"' in line, line
    proc.stdin.close()
    await proc.wait()
    return elapsed, _cpu_since(before)


async def spawn_to_exit(argv: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds from spawn to exit (the floors), and the child's CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdin=asyncio.subprocess.DEVNULL)
    assert await proc.wait() == 0
    return time.perf_counter() - start, _cpu_since(before)


def _cpu_since(before: resource.struct_rusage) -> float:
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _environment(tmp: str) -> dict[str, str]:
    # No keys and no inherited settings: the server a newcomer's IDE starts.
    return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "MCP_IMAGE_SAVE_DIR": f"{tmp}/img",
            "HOME": tmp}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f}"


async def compare(runs: int, baseline: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "reference_server.py"
        ref.write_text(REFERENCE)
        env = _environment(tmp)
        servers = {
            "reference MCPServer": [sys.executable, str(ref)],
            "mcp-image-server": [sys.executable, "-m", "mcp_image_server"],
        }
        if baseline is not None:  # e.g. a `git worktree` of the previous commit: before/after in one run
            servers["baseline mcp-image-server"] = [
                sys.executable, "-c", ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
                                       "runpy.run_module('mcp_image_server', run_name='__main__', alter_sys=True)"),
                str(baseline),
            ]
        floors = {
            "floor: python -c pass": [sys.executable, "-c", "pass"],
            "floor: import mcp.server.mcpserver": [sys.executable, "-c", "import mcp.server.mcpserver"],
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in (*floors, *servers)}
        for argv in servers.values():  # warm the OS file cache once each
            await spawn_to_initialize(argv, env)
        for _ in range(runs):  # interleave so drift hits all alike
            for name, argv in floors.items():
                times[name].append(await spawn_to_exit(argv, env))
            for name, argv in servers.items():
                times[name].append(await spawn_to_initialize(argv, env))
    print(f"{'':36s} {'wall ms: median':>15s} {'min':>7s} {'max':>7s}   {'cpu ms: median':>14s} {'min':>7s}")
    for name, values in times.items():
        wall = [w for w, _ in values]
        cpu = [c for _, c in values]
        print(f"{name:36s} {_ms(statistics.median(wall)):>15s} {_ms(min(wall))} {_ms(max(wall))}"
              f"   {_ms(statistics.median(cpu)):>14s} {_ms(min(cpu))}   n={len(values)}")

    def median(name: str, index: int) -> float:
        return statistics.median(v[index] for v in times[name])

    # CPU time is the child's own work; on a busy machine it varies far less than wall time.
    for label, index in (("wall", 0), ("cpu", 1)):
        ratio = median("mcp-image-server", index) / median("reference MCPServer", index)
        print(f"ratio ours/reference ({label}): {ratio:.2f} (goal <= 1.30)")
        if baseline is not None:
            ratio = median("mcp-image-server", index) / median("baseline mcp-image-server", index)
            print(f"ratio ours/baseline ({label}): {ratio:.2f}")


async def breakdown(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "reference_server.py"
        ref.write_text(REFERENCE)
        env = _environment(tmp)
        subjects = {
            "mcp-image-server": [sys.executable, "-m", "mcp_image_server"],
            "reference MCPServer": [sys.executable, str(ref)],
        }
        results: dict[str, list[tuple[list[Import], float]]] = {name: [] for name in subjects}
        for _ in range(runs):
            for name, argv in subjects.items():
                results[name].append(await imports_before_initialize(argv, env))
    for name, samples in results.items():
        tables = [by_package(imports) for imports, _ in samples]
        packages = sorted({p for t in tables for p in t}, key=lambda p: -statistics.median(
            t.get(p, (0, 0))[0] for t in tables))
        total = statistics.median(sum(i.self_us for i in imports) for imports, _ in samples)
        wall = statistics.median(w for _, w in samples)
        print(f"\n{name}: imports before the initialize reply, median of {len(samples)} runs under -X importtime")
        print(f"  all imports {total / 1000:.1f} ms of {wall * 1000:.1f} ms spawn -> reply (importtime inflates both)")
        print(f"  {'package':28s} {'own ms':>8s} {'incl ms':>8s} {'modules':>8s}")
        for p in packages:
            own = statistics.median(t.get(p, (0, 0))[0] for t in tables) / 1000
            incl = statistics.median(t.get(p, (0, 0))[1] for t in tables) / 1000
            count = statistics.median(sum(1 for i in imports if package_of(i.name) == p) for imports, _ in samples)
            if own >= 1 or incl >= 5:
                print(f"  {p:28s} {own:8.1f} {incl:8.1f} {count:8.0f}")
        ours = defaultdict(list)
        for imports, _ in samples:
            per: dict[str, int] = defaultdict(int)
            for i in imports:
                if i.name.startswith("mcp_image_server"):
                    per[i.name] += i.self_us
            for module, us in per.items():
                ours[module].append(us)
        if ours:
            print("  our modules (own ms): " + ", ".join(
                f"{m.removeprefix('mcp_image_server.') or m} {statistics.median(v) / 1000:.1f}"
                for m, v in sorted(ours.items(), key=lambda kv: -statistics.median(kv[1]))
                if statistics.median(v) >= 500))
        heavy = sorted({package_of(i.name) for imports, _ in samples for i in imports} & set(HEAVY))
        print(f"  not needed for the first reply, yet imported: {', '.join(heavy) or 'none'}")
    _print_sdk_parts(results["reference MCPServer"])
    _print_extra(results["mcp-image-server"], results["reference MCPServer"])
    await _print_stages(runs)


def _print_sdk_parts(samples: Sequence[tuple[list[Import], float]]) -> None:
    """Own time of the SDK's parts in the reference: which of them a stdio server needs at all."""
    per: dict[str, list[int]] = defaultdict(list)
    for imports, _ in samples:
        run: dict[str, int] = defaultdict(int)
        for i in imports:
            if (part := sdk_part_of(i.name)) is not None:
                run[part] += i.self_us
        for part, us in run.items():
            per[part].append(us)
    print("\nthe SDK's own time by part (reference, median ms under -X importtime):")
    for part, values in sorted(per.items(), key=lambda kv: -statistics.median(kv[1])):
        if statistics.median(values) >= 1000:
            print(f"  {part:36s} {statistics.median(values) / 1000:8.1f}")
    side = [on_behalf_of(imports, _is_client_or_http, _is_sdk_core) for imports, _ in samples]
    total = statistics.median(sum(i.self_us for i in imports) for imports, _ in samples)
    print(f"  imported for the client and HTTP side (and what they pull in first): "
          f"{statistics.median(side) / 1000:.1f} ms of {total / 1000:.1f} ms (an upper bound of what a"
          " stdio-only SDK import would save; `import mcp` runs mcp/__init__.py, which imports the client)")


CLIENT_AND_HTTP: Final = (
    "httpx2", "httpcore2", "httpx", "httpcore", "h11", "starlette", "uvicorn", "sse_starlette", "python_multipart",
    "watchfiles", "click", "cryptography", "idna", "certifi", "mcp.client", "mcp.server.auth",
    "mcp.server.streamable_http", "mcp.server.streamable_http_manager", "mcp.server._streamable_http_modern",
    "mcp.server.sse", "mcp.server.transport_security",
)
"""What a stdio server never calls: the SDK's client, its HTTP transports and their dependencies."""


SDK_CORE: Final = ("mcp", "mcp_types", "pydantic", "pydantic_core", "anyio", "typing_extensions",
                   "annotated_types", "typing_inspection")
"""What any server needs, even when the client happens to import it first (``mcp.client._memory``
imports ``mcp.server``)."""


def _is_client_or_http(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in CLIENT_AND_HTTP)


def _is_sdk_core(module: str) -> bool:
    return module.partition(".")[0] in SDK_CORE and not _is_client_or_http(module)


def on_behalf_of(imports: Sequence[Import], wanted: Callable[[str], bool], kept: Callable[[str], bool]) -> int:
    """Own microseconds of the ``wanted`` modules and of every module first imported beneath one,
    except the ``kept`` ones and what they import (needed either way)."""
    total = 0
    ancestors: list[bool] = []  # per open level: is this line, or a line above it, wanted?
    for imp in reversed(imports):
        del ancestors[imp.level:]
        inside = wanted(imp.name) or (not kept(imp.name) and bool(ancestors) and ancestors[-1])
        if inside:
            total += imp.self_us
        ancestors.append(inside)
    return total


async def _print_stages(runs: int) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)}
    stages = json.dumps([[label, list(modules)] for label, modules in STAGES])
    samples: list[dict[str, float]] = []
    for _ in range(runs):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _STAGES_CHILD, stages, env=env, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        samples.append(dict(json.loads(out)))
    print(f"\nimport stages in one process, CPU ms (median of {runs}; each counts what earlier ones did not import):")
    total = 0.0
    for label, _ in STAGES:
        ms = statistics.median(s[label] for s in samples) * 1000
        total += ms
        print(f"  {label:52s} {ms:8.1f}")
    print(f"  {'sum':52s} {total:8.1f}")


def _print_extra(ours: Sequence[tuple[list[Import], float]], ref: Sequence[tuple[list[Import], float]]) -> None:
    """What ours imports that the reference does not: the part of the start-up that is ours to cut."""
    ref_names = {i.name for imports, _ in ref for i in imports}
    own: dict[str, list[int]] = defaultdict(list)
    for imports, _ in ours:
        for i in imports:
            if i.name not in ref_names:
                own[package_of(i.name)].append(i.self_us)
    runs = len(ours)
    total = sum(sum(v) for v in own.values()) / runs / 1000
    count = sum(len(v) for v in own.values()) // runs
    print(f"\nimported by mcp-image-server only: {count} modules, {total:.1f} ms own (mean per run)")
    for package, values in sorted(own.items(), key=lambda kv: -sum(kv[1])):
        if sum(values) / runs >= 300:
            print(f"  {package:28s} {sum(values) / runs / 1000:8.1f} ms  {len(values) // runs:4d} modules")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=None, help="runs per subject (10, or 5 with --breakdown)")
    parser.add_argument("--breakdown", action="store_true", help="split the imports before the first reply")
    parser.add_argument("--baseline", type=Path, help="a directory holding another mcp_image_server to compare")
    args = parser.parse_args(argv)
    if args.breakdown:
        asyncio.run(breakdown(args.runs or 5))
    else:
        asyncio.run(compare(args.runs or 10, args.baseline))


if __name__ == "__main__":
    main()
