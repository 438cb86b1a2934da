"""Downloading missing data set files, with rollback, and the one error that missing data ends in.

A failed download removes what it left half-written (empty folders, truncated files), so the next call fails or
succeeds cleanly; only archives whose checksum is right are kept. Downloads run under a socket timeout
(``DOWNLOAD_TIMEOUT_S``) so that an offline machine whose firewall drops packets fails in seconds, not minutes.
"""
from __future__ import annotations

import hashlib
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation while torchvision downloads; offline machines fail fast


class DataNotFoundError(RuntimeError):
    """A data set's files are missing (or unreadable) and could not be downloaded."""


def ensure_files(name: str, directory: Path, expected: str, missing: Callable[[], bool], download: bool,
                 fetch: Callable[[], None], scratch: list[Path], verified: dict[Path, str], hint: str = "") -> None:
    """Download through ``fetch`` if files are missing; on failure roll back and raise ``DataNotFoundError``.

    ``scratch`` lists the files and folders a download writes; whatever it adds there (and any parent folder it
    creates) is removed again if the download fails, except archives in ``verified`` (path -> md5) that are intact.
    ``hint`` ends the not-found message with another place the files can come from.
    """
    if not missing():
        return
    if not download:
        raise _not_found(name, directory, expected, "download is disabled (download=False)", hint)
    before = _snapshot(scratch)
    new_parents = [p for p in scratch[0].parents if not p.exists()]  # deepest first
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            fetch()
    except Exception as error:  # RuntimeError (all mirrors failed, bad checksum), URLError/OSError, timeouts
        _roll_back(scratch, before, verified, new_parents)
        if missing():
            raise _not_found(name, directory, expected, f"the download failed: {brief(error)}", hint) from error
        raise unreadable(name, directory, expected, error) from error
    if missing():
        raise _not_found(name, directory, expected, "the download finished but the files are still missing", hint)


def unreadable(name: str, directory: Path, expected: str, error: BaseException) -> DataNotFoundError:
    """The error for files that are there but cannot be read."""
    return DataNotFoundError(
        f"dataset {name!r} under {directory} could not be read ({brief(error)}): expected {expected}. "
        f"Delete the broken files and place intact ones there, or set data_root elsewhere.")


def brief(error: BaseException, limit: int = 300) -> str:
    """An exception's type and message on one line, cut to ``limit`` characters."""
    text = " ".join(str(error).split()) or "no message"
    text = f"{type(error).__name__}: {text}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _not_found(name: str, directory: Path, expected: str, reason: str, hint: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"dataset {name!r} not found under {directory}: expected {expected}; {reason}. "
        f"Place the files in {directory}, or set data_root to the folder that holds them{hint}, "
        f"or let download=True fetch them on a machine with network access.")


@contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _snapshot(paths: list[Path]) -> set[Path]:
    """Every existing path at or under ``paths``."""
    found = set()
    for path in paths:
        if path.exists():
            found.add(path)
            found.update(path.rglob("*"))
    return found


def _roll_back(scratch: list[Path], before: set[Path], verified: dict[Path, str], new_parents: list[Path]) -> None:
    """Remove what a failed download added under ``scratch`` (keeping intact archives), then emptied new folders."""
    added = sorted(_snapshot(scratch) - before, key=lambda p: len(p.parts), reverse=True)  # children first
    for path in added + new_parents:
        if path.is_file() and not (path in verified and md5(path) == verified[path]):
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
