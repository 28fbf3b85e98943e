"""The audit log (MCP_AUDIT_LOG): who did what, one JSON object a line, written off the event loop.

A line names the token by its name, never the token; it carries no prompt and no arguments
beyond provider, model, n and size, so nothing a caller typed (or a header it sent) lands here.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import queue
import sys
import time
from dataclasses import asdict
from typing import Any

from .errors import ConfigError
from .observe import JobChange, ToolCall

__all__ = ["AuditLog"]


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


class AuditLog:
    """A listener (observe.py) writing through a queue to a file or stderr."""

    def __init__(self, target: str) -> None:
        """Raises: ConfigError when the file cannot be opened for appending."""
        if target == "-":
            handler: logging.Handler = logging.StreamHandler(sys.stderr)
        else:
            try:  # created private: the log says who used the server and when
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
                handler = logging.FileHandler(target, mode="a", encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"MCP_AUDIT_LOG: cannot append to {target}: {exc.strerror}", details={"variable": "MCP_AUDIT_LOG"}
                ) from None
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._listener = logging.handlers.QueueListener(self._queue, handler)
        self._handler = handler
        self._closed = False
        self._listener.start()

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps({"time": _now(), **record}, separators=(",", ":"), default=str)
        self._queue.put(logging.LogRecord("audit", logging.INFO, "", 0, line, None, None))

    def tool_called(self, call: ToolCall) -> None:
        self._write({"event": "tool_call", **asdict(call), "duration_s": round(call.duration_s, 4)})

    def job_changed(self, change: JobChange) -> None:
        record = asdict(change)
        record["duration_s"] = round(change.duration_s, 4)
        if change.run_s is not None:
            record["run_s"] = round(change.run_s, 4)
        self._write({"event": "job", **record})

    def provider_failed(self, provider: str, code: str) -> None:
        self._write({"event": "provider_error", "provider": provider, "code": code})

    def close(self) -> None:
        """Write what is queued, then close the file (once; later calls do nothing)."""
        if self._closed:
            return
        self._closed = True
        self._listener.stop()
        self._handler.close()
