import os
from pathlib import Path

import pytest

from scalp_ml.atomic import atomic_write_text


def test_atomic_write_replaces_whole_files_with_the_usual_permissions(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "report.md"
    atomic_write_text(path, "old")
    previous = os.umask(0o022)
    try:
        atomic_write_text(path, "new ✓")
    finally:
        os.umask(previous)
    assert path.read_text(encoding="utf-8") == "new ✓"
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["report.md"]  # no temporary left


def test_an_unwritable_folder_is_named_and_the_old_file_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "data" / "manifest.csv"
    atomic_write_text(path, "kept")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", refuse)  # as on a read-only dataset mount
    with pytest.raises(PermissionError, match=f"Cannot write {path}: its folder is not writable"):
        atomic_write_text(path, "new")
    assert path.read_text() == "kept"
