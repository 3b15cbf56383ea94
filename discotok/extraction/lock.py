"""One run at a time per output folder, and the leftovers of killed runs.

``output_lock`` holds an exclusive ``fcntl.flock`` on ``.discotok.lock`` in the output folder for
the whole run (the file holds the pid and command); a second ``discotok encode`` or
``discotok decode`` into the same folder fails at once naming the folder and that pid. The lock
dies with its process (a kill leaves no stale lock) and the file is removed on exit. While the
lock is held no other run writes there, so ``remove_stale_temporaries`` can delete the
``atomic_path`` temporaries a killed run left behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from discotok.atomic import temporary_target
from discotok.io import ExtractError

LOCK_NAME = ".discotok.lock"


def is_launched_rank() -> bool:
    """Whether this process is a rank other than 0 started by a distributed launcher (Lightning DDP,
    torchrun): its rank 0 holds the lock and tidies the folder for it."""
    return any(os.environ.get(key, "0") != "0" for key in ("LOCAL_RANK", "NODE_RANK", "RANK"))


def _holder(fd: int) -> str:
    text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    return f"pid {text[0]}, {' '.join(text[1:])}" if text else "pid unknown"


@contextmanager
def output_lock(folder: Path, command: str) -> Iterator[None]:
    """Hold ``folder``'s lock (created with the folder if needed) while the block runs; ``ExtractError``
    at once when another process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise ExtractError(f"{folder} is in use by another run ({holder}); wait for it to finish or "
                               "write to another output folder") from None
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)  # the previous holder removed the file after we opened it: lock the one there now
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
        yield
    finally:
        os.unlink(path)
        os.close(fd)


def remove_stale_temporaries(folder: Path, is_ours: Callable[[str], bool]) -> list[str]:
    """Delete ``atomic_path`` temporaries in ``folder`` whose target name ``is_ours``; returns their names.
    Call it only while holding ``output_lock``."""
    removed = []
    for entry in folder.iterdir() if folder.is_dir() else ():
        target = temporary_target(entry.name)
        if target is not None and is_ours(target) and entry.is_file():
            entry.unlink()
            removed.append(entry.name)
    return removed


@contextmanager
def claim_output(folder: Path, command: str, is_ours: Callable[[str], bool]) -> Iterator[list[str]]:
    """``output_lock`` on ``folder`` with the stale temporaries of ``is_ours`` outputs removed (their names
    are yielded); on a launched rank (not 0) nothing, as its rank 0 holds the lock."""
    if is_launched_rank():
        yield []
        return
    with output_lock(folder, command):
        yield remove_stale_temporaries(folder, is_ours)
