"""Per-call output files (``output_dir`` / ``filename``, stdio only): where a copy of each image goes.

The target is checked when the call is made (inside the allowed folders, symlinks resolved, no
existing file unless ``overwrite``) and written when the image is saved: to a temporary file in
the same folder, then linked into place (which refuses to replace a file that appeared
meanwhile) or, with ``overwrite``, renamed over it. Either way a reader never sees half a file.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from .errors import InvalidArgumentError, OutputExistsError, PathNotAllowedError

__all__ = ["plan", "targets", "write"]

_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,119}$")
_EXTENSIONS: Final = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


def plan(
    output_dir: str | None, filename: str | None, folders: Sequence[Path], output_format: str, n: int,
    overwrite: bool,
) -> str:
    """The checked target, ``<dir>/<stem>`` (``targets`` adds the extension and, for n > 1, ``-<i>``).

    Raises:
        PathNotAllowedError, InvalidArgumentError, OutputExistsError.
    """
    if not folders:
        raise PathNotAllowedError("output_dir has no allowed folder to go in", details={"field": "output_dir"})
    where = ", ".join(str(f) for f in folders)
    base = Path(output_dir).expanduser() if output_dir else folders[0]
    if not base.is_absolute():
        base = folders[0] / base
    real = base.resolve()  # symlinks in the part that exists are followed before the check
    if not any(real == f or real.is_relative_to(f) for f in folders):
        raise PathNotAllowedError(
            f"output_dir must be inside the allowed folders ({where})",
            details={"field": "output_dir", "allowed": [str(f) for f in folders]},
        )
    stem = filename if filename is not None else "image-" + secrets.token_hex(4)
    for ext in _EXTENSIONS.values():
        stem = stem.removesuffix(ext)
    if not _NAME_RE.match(stem) or stem.endswith((".", " ")):
        raise InvalidArgumentError(
            "filename must be a plain file name (letters, digits, space, . _ -; no folders), at most 120 characters",
            details={"field": "filename"},
        )
    planned = str(real / stem)
    if not overwrite:
        for target in targets(planned, output_format, n):
            if os.path.lexists(target):
                raise OutputExistsError(
                    f"{target} exists; pass overwrite=true to replace it", details={"field": "filename", "path": target}
                )
    return planned


def targets(planned: str, output_format: str, n: int) -> list[str]:
    ext = _EXTENSIONS[output_format]
    return [f"{planned}{ext}"] if n == 1 else [f"{planned}-{i + 1}{ext}" for i in range(n)]


def write(target: str, data: bytes, overwrite: bool) -> bool:
    """Put ``data`` at ``target`` whole; ``False`` when a file appeared there and ``overwrite`` is off.
    Blocking. Raises: OSError."""
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, target)
            return True
        try:
            os.link(tmp, target)  # fails if target exists: never clobbers
        except FileExistsError:
            return False
        except OSError:  # no hard links here (FAT, some network shares): exclusive create, then write
            try:
                out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(out, "wb") as fh:
                fh.write(data)
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
