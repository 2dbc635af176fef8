"""Decoded-image cache: every manifest image letterboxed once into a uint8 ``.npy`` file on disk.

Training then reads raw pixels instead of decoding and resizing JPEGs every epoch. The cache is
keyed by the manifest's content (each image's path, size and modification time) and the image
size, so a changed manifest or size is rebuilt, never silently reused. It is built under a file
lock (one build for DDP ranks and parallel sweep trials) into a temporary file that is renamed
when complete; the JSON sidecar holding the key is written last, so an interrupted build is
never trusted. Rows are read with ``os.preadv``: the array is never loaded whole into memory.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from scalp_ml.atomic import atomic_write_text, check_writable
from scalp_ml.data.aihub.reader import Download, location_archive
from scalp_ml.data.images import decode_rgb, letterbox
from scalp_ml.progress import progress
from scalp_ml.workers import WorkerPool

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: letterboxed by scalp_ml.data.images.letterbox, any height x width
CHUNK = 32  # images per task of the build's process pool


@dataclass(frozen=True)
class CacheFiles:
    """The files of one cache: the array, its sidecar (key + image order) and the build lock."""

    array: Path
    sidecar: Path
    lock: Path

    @classmethod
    def at(cls, cache_dir: str | Path, image_size: tuple[int, int]) -> CacheFiles:
        """The cache of ``(height, width)`` images in ``cache_dir``."""
        stem = Path(cache_dir) / f"images-{_size_name(image_size)}"
        return cls(stem.with_suffix(".npy"), stem.with_suffix(".json"), stem.with_suffix(".lock"))


def manifest_key(root: str | Path, paths: Sequence[str], image_size: tuple[int, int]) -> str:
    """SHA-256 of the image size and each image's location, byte size and modification time.

    An image inside a zip archive counts with the archive's size and modification time.

    Raises:
        FileNotFoundError: An image (or its archive) is missing (the message names it).
    """
    entries = []
    for path in sorted(paths):
        file = Path(root) / (location_archive(path) or path)
        try:
            stat = file.stat()
        except FileNotFoundError as error:
            raise FileNotFoundError(f"Image {path} of the manifest is missing ({file})") from error
        entries.append((path, stat.st_size, stat.st_mtime_ns))
    content = {"version": FORMAT_VERSION, "image_size": list(image_size), "images": entries}
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


class DecodedImages(Mapping[str, np.ndarray]):
    """Reads letterboxed RGB rows of a built cache by image path.

    The file is opened lazily in each process (loader workers, DDP ranks); pickling carries
    the path and index only.
    """

    def __init__(self, files: CacheFiles) -> None:
        sidecar = json.loads(files.sidecar.read_text())
        self.path = files.array
        self.index = {path: row for row, path in enumerate(sidecar["images"])}
        height, width = sidecar["image_size"]
        self.shape = (height, width, 3)
        self.row_bytes = height * width * 3
        self.offset = int(sidecar["offset"])
        self._fd: int | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __iter__(self) -> Iterator[str]:
        return iter(self.index)

    def __getitem__(self, path: str) -> np.ndarray:
        """The letterboxed ``H x W x 3`` uint8 image of a manifest path."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        image = np.empty(self.shape, dtype=np.uint8)
        read = os.preadv(self._fd, [image], self.offset + self.index[path] * self.row_bytes)
        if read != self.row_bytes:
            raise OSError(f"Decoded-image cache {self.path} is truncated: rebuild it")
        return image

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None}

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)


def open_cache(
    root: str | Path,
    paths: Sequence[str],
    image_size: tuple[int, int],
    cache_dir: str | Path,
    workers: int,
) -> DecodedImages:
    """The cache of ``paths`` (relative to ``root``) at ``image_size``, built if not current.

    Raises:
        OSError: The disk lacks room for the cache, or an image cannot be decoded.
    """
    files = CacheFiles.at(cache_dir, image_size)
    key = manifest_key(root, paths, image_size)
    check_writable(files.lock, "decoded-image cache", "data.cache_dir", "/tmp/scalp_cache")
    with _locked(files.lock):
        if not is_current(files, key):
            build_cache(root, paths, image_size, files, key, workers)
    return DecodedImages(files)


def is_current(files: CacheFiles, key: str) -> bool:
    """Whether a complete cache with this key exists (sidecar written, array of full size)."""
    try:
        sidecar = json.loads(files.sidecar.read_text())
        height, width = sidecar["image_size"]
        expected = sidecar["offset"] + sidecar["count"] * height * width * 3
        return sidecar["key"] == key and files.array.stat().st_size == expected
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
        return False


def build_cache(
    root: str | Path,
    paths: Sequence[str],
    image_size: tuple[int, int],
    files: CacheFiles,
    key: str,
    workers: int,
) -> None:
    """Letterboxes every image into the cache with a process pool; see the module docstring.

    Raises:
        OSError: Not enough free disk space (nothing new is written), or an image cannot be
            decoded (the partial build is removed; the message names the image).
    """
    # The old cache is not current: it is removed before the space check, so that its own
    # bytes (e.g. an array whose sidecar did not fit on a full disk) count as free.
    files.sidecar.unlink(missing_ok=True)
    files.array.unlink(missing_ok=True)
    for leftover in files.array.parent.glob(f".{files.array.name}.*.tmp"):
        leftover.unlink()  # a killed build's: builds run under the lock, so none is running
    needed = len(paths) * image_size[0] * image_size[1] * 3
    free = shutil.disk_usage(files.array.parent).free
    log.info(
        "Building the decoded-image cache %s: %d images at %s, %s (%s free)",
        files.array,
        len(paths),
        _size_name(image_size),
        _gigabytes(needed),
        _gigabytes(free),
    )
    if needed >= free:
        raise OSError(
            f"Not enough disk space for the decoded-image cache {files.array}: it needs "
            f"{_gigabytes(needed)} ({len(paths)} images at {_size_name(image_size)}), "
            f"{files.array.parent} has {_gigabytes(free)} free. Free some space, point "
            "data.cache_dir to a larger disk, or train without a cache (data.cache=none)"
        )
    temporary = files.array.with_name(f".{files.array.name}.{os.getpid()}.tmp")
    try:
        array = np.lib.format.open_memmap(
            temporary, mode="w+", dtype=np.uint8, shape=(len(paths), *image_size, 3)
        )
        offset = int(array.offset)
        del array
        _write_rows_in_parallel(root, list(paths), image_size, temporary, workers)
        with temporary.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, files.array)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sidecar = {
        "key": key,
        "version": FORMAT_VERSION,
        "image_size": list(image_size),
        "count": len(paths),
        "offset": offset,
        "images": list(paths),
    }
    atomic_write_text(files.sidecar, json.dumps(sidecar))


def _write_rows_in_parallel(
    root: str | Path, paths: list[str], image_size: tuple[int, int], array_path: Path, workers: int
) -> None:
    chunks = [(start, paths[start : start + CHUNK]) for start in range(0, len(paths), CHUNK)]
    write = partial(_write_rows, root, image_size, array_path)
    description = f"Caching {len(paths)} images at {_size_name(image_size)}"
    if workers <= 1:
        for chunk in progress(chunks, description):
            write(chunk)
        return
    with WorkerPool(workers) as pool:
        for _ in progress(pool.imap(write, chunks), description, total=len(chunks)):
            pass


def _write_rows(
    root: str | Path, image_size: tuple[int, int], array_path: Path, chunk: tuple[int, list[str]]
) -> None:
    """Letterboxes a chunk's paths into its rows ``start...`` of the array (in one process)."""
    start, paths = chunk
    download = Download(root)
    array = np.load(array_path, mmap_mode="r+")
    for row, path in enumerate(paths, start):
        array[row] = letterbox(decode_rgb(download.read(path), path), *image_size)
    array.flush()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _gigabytes(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


def _size_name(image_size: tuple[int, int]) -> str:
    height, width = image_size
    return f"{height}px" if height == width else f"{height}x{width}px"
