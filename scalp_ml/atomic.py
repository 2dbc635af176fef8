"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import errno
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Writes ``data`` to a temporary file beside ``path``, then renames it into place.

    Raises:
        PermissionError: The folder of ``path`` is not writable (the message names it).
        OSError: The disk is full (the message names the file, its size and the space left;
            the previous file at ``path`` is kept).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except PermissionError as error:
        raise PermissionError(f"Cannot write {path}: its folder is not writable") from error
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes owner-only files
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            free = shutil.disk_usage(path.parent).free
            raise OSError(
                errno.ENOSPC,
                f"No space left to write {path} ({len(data):,} bytes; {free:,} bytes free on "
                "its disk). The previous file there, if any, is kept",
            ) from error
        raise
    return path


def check_writable(path: str | Path, what: str, setting: str, example: str) -> None:
    """Fails before any work when ``path`` could not be written, naming the setting that moves it.

    Args:
        path: The file to be written (its folder is made if missing).
        what: What the file is, for the message ("split file").
        setting: The config key that places it ("data.split.file").
        example: A value for that key to suggest ("/tmp/split.json").

    Raises:
        OSError: The folder cannot be made or written (read-only disk, permissions).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        raise OSError(
            error.errno,
            f"Cannot write the {what} {path}: {error.strerror or error}. Point {setting} to a "
            f"writable place, e.g. {setting}={example}",
        ) from error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Writes UTF-8 ``text`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def save_figure(figure: Figure, path: Path, dpi: int = 110) -> None:
    """Writes a figure atomically (PNG, or JPEG for a ``.jpg`` path) and frees it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    if path.suffix.lower() in (".jpg", ".jpeg"):
        figure.savefig(buffer, format="jpg", dpi=dpi, pil_kwargs={"quality": 85})
    else:
        figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
