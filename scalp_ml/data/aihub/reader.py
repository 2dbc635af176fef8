"""Read the files of a download where they are: an extracted tree, zip archives, or both.

Every file has a *location* relative to the download's root: ``Training/a/b.jpg`` for a file on
disk, ``Training/[원천]x.zip::[원천]x/b.jpg`` for a member of an archive (read in place, never
extracted). Archive member names written by Korean Windows tools are CP949 without the zip's
UTF-8 flag; they are decoded as such.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

log = logging.getLogger(__name__)

ARCHIVE_SEPARATOR = "::"
ARCHIVE_SUFFIX = ".zip"
_UTF8_NAME_FLAG = 0x800


@dataclass(frozen=True)
class DownloadFile:
    """One file on disk below the root (an archive counts as one file)."""

    path: str
    size: int
    mtime_ns: int


def location_name(location: str) -> str:
    """The file name at the end of a location, e.g. ``b.jpg``."""
    return PurePosixPath(location.rsplit(ARCHIVE_SEPARATOR, 1)[-1]).name


def location_archive(location: str) -> str:
    """The archive a location lies in, or ``""`` for a file on disk."""
    archive, separator, _ = location.partition(ARCHIVE_SEPARATOR)
    return archive if separator else ""


def list_files(root: Path) -> list[DownloadFile]:
    """Every file below ``root``, sorted, skipping hidden files and folders.

    Hidden folders hold tool state such as this project's ``.scalp_ml/`` (index, splits) or
    ``.ipynb_checkpoints``, never data. A link that leads nowhere (dangling, or a loop) is left
    out with a warning naming it: it holds no data, and an image or label it stood for is
    reported missing by the pairing.

    Raises:
        FileNotFoundError: ``root`` does not exist, is not a folder, or holds no files.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"Data root {root} does not exist or is not a folder")
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            try:
                stat = path.stat()
            except OSError as error:
                log.warning("Leaving out %s: a link that leads nowhere (%s)", path, error.strerror)
                continue
            files.append(
                DownloadFile(path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns)
            )
    if not files:
        raise FileNotFoundError(f"Data root {root} is empty: no label or image files below it")
    return files


def fingerprint(files: list[DownloadFile]) -> str:
    """SHA-256 of the files' names, sizes and modification times: changes with the download."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.path}\t{file.size}\t{file.mtime_ns}\n".encode())
    return digest.hexdigest()


def member_name(info: zipfile.ZipInfo) -> str:
    """An archive member's real name.

    ``zipfile`` decodes names without the UTF-8 flag as CP437; such a name is re-encoded to its
    original bytes and decoded as UTF-8 (tools that omit the flag) or else CP949 (Korean
    Windows).
    """
    if info.flag_bits & _UTF8_NAME_FLAG:
        return info.filename
    raw = info.filename.encode("cp437")
    for encoding in ("utf-8", "cp949"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return info.filename


class Download:
    """Opens files of a download by location; archive handles are kept open per process.

    Safe to hand to DataLoader worker processes: a process that did not open a handle itself
    (fork or spawn) opens its own, so no two processes share a file offset.

    Args:
        root: The download's root folder.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._archives: dict[str, tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]] = {}
        self._pid = os.getpid()

    def __getstate__(self) -> dict:
        return {"root": self.root}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["root"])

    def members(self, archive: str) -> dict[str, zipfile.ZipInfo]:
        """The files of one archive (decoded member name -> entry), in archive order.

        Raises:
            OSError: The archive is not a readable zip file (the message names it).
        """
        if self._pid != os.getpid():
            self._archives, self._pid = {}, os.getpid()
        if archive not in self._archives:
            try:
                handle = zipfile.ZipFile(self.root / archive)
            except zipfile.BadZipFile as error:
                message = f"{self.root / archive}: not a readable zip archive ({error})"
                raise OSError(message) from error
            infos = {member_name(info): info for info in handle.infolist() if not info.is_dir()}
            self._archives[archive] = (handle, infos)
        return self._archives[archive][1]

    def locations(self, files: list[DownloadFile]) -> Iterator[tuple[str, int]]:
        """Location and size of every file, looking inside archives."""
        for file in files:
            if file.path.lower().endswith(ARCHIVE_SUFFIX):
                for name, info in self.members(file.path).items():
                    yield f"{file.path}{ARCHIVE_SEPARATOR}{name}", info.file_size
            else:
                yield file.path, file.size

    def open(self, location: str) -> BinaryIO:
        """A binary stream of the file at ``location``."""
        archive = location_archive(location)
        if not archive:
            return (self.root / location).open("rb")
        member = location[len(archive) + len(ARCHIVE_SEPARATOR) :]
        info = self.members(archive).get(member)
        if info is None:
            raise FileNotFoundError(f"{self.root / archive}: holds no file {member}")
        return self._archives[archive][0].open(info)

    def read(self, location: str) -> bytes:
        """The bytes of the file at ``location``.

        Raises:
            OSError: The file cannot be read, or its archive member is damaged (bad CRC,
                corrupt or truncated compressed data); the message names the location.
        """
        try:
            with self.open(location) as stream:
                return stream.read()
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            raise OSError(f"{self.root / location}: damaged archive member ({error})") from error

    def close(self) -> None:
        """Closes the archives this process opened."""
        for handle, _ in self._archives.values():
            handle.close()
        self._archives = {}
