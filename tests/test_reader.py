import os
import pickle
import zipfile
from pathlib import Path

import pytest

from scalp_ml.data.aihub.reader import Download, fingerprint, list_files, member_name


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    with zipfile.ZipFile(tmp_path / "[원천]비듬_2.중등도.zip", "w") as bundle:
        bundle.writestr("[원천]비듬_2.중등도/a.jpg", b"first")  # UTF-8 name with the flag
        bundle.writestr("b.jpg", b"second")
    return tmp_path


def test_member_names_decode_utf8_cp949_and_plain_ascii() -> None:
    for raw, flag in ((b"[\xbf\xf8\xc3\xb5]x.jpg", 0), ("[원천]x.jpg".encode(), 0)):
        info = zipfile.ZipInfo(raw.decode("cp437"))
        info.flag_bits = flag
        assert member_name(info) == "[원천]x.jpg"
    assert member_name(zipfile.ZipInfo("plain.jpg")) == "plain.jpg"


def test_locations_look_inside_archives_and_reads_follow_them(archive: Path) -> None:
    download = Download(archive)
    locations = dict(download.locations(list_files(archive)))
    name = "[원천]비듬_2.중등도.zip"
    assert locations == {f"{name}::[원천]비듬_2.중등도/a.jpg": 5, f"{name}::b.jpg": 6}
    assert download.read(f"{name}::b.jpg") == b"second"
    with pytest.raises(FileNotFoundError, match=r"holds no file c\.jpg"):
        download.read(f"{name}::c.jpg")


def test_each_process_opens_its_own_archive_handles(
    archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    download = Download(archive)
    location = "[원천]비듬_2.중등도.zip::b.jpg"
    assert download.read(location) == b"second"
    parent_handle = next(iter(download._archives.values()))[0]
    copy = pickle.loads(pickle.dumps(download))  # as sent to a spawned loader process
    assert copy._archives == {} and copy.read(location) == b"second"
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as in a forked loader process
    assert download.read(location) == b"second"
    assert next(iter(download._archives.values()))[0] is not parent_handle


def test_a_broken_archive_is_named(tmp_path: Path) -> None:
    (tmp_path / "cut.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(OSError, match=r"cut\.zip: not a readable zip archive"):
        list(Download(tmp_path).locations(list_files(tmp_path)))


def test_the_fingerprint_changes_with_names_sizes_and_times(archive: Path) -> None:
    before = fingerprint(list_files(archive))
    assert fingerprint(list_files(archive)) == before
    (archive / "new.json").write_text("{}")
    assert fingerprint(list_files(archive)) != before
