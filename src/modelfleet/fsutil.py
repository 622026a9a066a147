"""Crash-safe file replacement: every state file, checkpoint and artifact is written through here."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def fsync_directory(directory: Path) -> None:
    """Make a rename (or a new entry) in ``directory`` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def replace_atomically(path: Path, write: Callable[[BinaryIO], object]) -> int:
    """Replace ``path`` with what ``write`` puts into a file object; returns the size written.

    Written beside the target, fsynced, renamed over it, and the directory fsynced: a crash (``kill -9``,
    power loss) leaves the old file or the new one, never a mix. A failed write leaves nothing behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
            size = handle.tell()
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    fsync_directory(path.parent)
    return size


def write_bytes_atomically(path: Path, data: bytes) -> int:
    """:func:`replace_atomically` for bytes at hand."""
    return replace_atomically(path, lambda handle: handle.write(data))


def write_text_atomically(path: Path, text: str) -> int:
    """:func:`replace_atomically` for a text file (UTF-8)."""
    return write_bytes_atomically(path, text.encode("utf-8"))
