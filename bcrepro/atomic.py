"""Writing a file so that a crash never leaves half of it: through a temporary file in the target's folder, renamed
into place only when complete. Every file the pipeline writes goes through here (no torch import: ``tracking``
and ``report.table`` use it too)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(target: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(binary file)`` on a temporary file beside ``target`` and rename it to ``target`` when it returns.

    The file gets the permissions a plain ``open(target, "w")`` would give (0666 less the umask), not ``mkstemp``'s
    private 0600: results are shared with collaborators and cluster jobs of other users.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        os.chmod(temporary, 0o666 & ~_current_umask())
        with os.fdopen(handle, "wb") as out:
            write(out)
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise
    return target


def write_text(target: str | os.PathLike, text: str) -> Path:
    return write_atomically(target, lambda out: out.write(text.encode("utf-8")))


def write_json(obj, target: str | os.PathLike) -> Path:
    """JSON, indented and with sorted keys."""
    return write_text(target, json.dumps(obj, indent=2, sort_keys=True) + "\n")
