import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from scalp_ml.data.aihub.index import default_manifest_path, load_manifest, load_or_build_index
from scalp_ml.data.images import BadImageError
from scalp_ml.data.synthetic import generate

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def zips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("zips")
    return generate(root, n_images=10, seed=2, workers=1, archives=True)


@pytest.fixture
def download(zips: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(zips, tmp_path / "download"))


def test_the_index_is_saved_beside_the_data_and_reused_while_unchanged(download: Path) -> None:
    first = load_or_build_index(download, show_progress=False)
    path = default_manifest_path(download)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["images"] == 10 and meta["verified"] is False
    assert meta["report"]["files"] == first.report.files
    stamp = path.stat().st_mtime_ns
    again = load_or_build_index(download, show_progress=False)
    assert path.stat().st_mtime_ns == stamp
    assert again.manifest.equals(first.manifest) and again.report == first.report
    assert again.manifest["site"].str.len().eq(4).all()  # "0013" stays text
    archive = next(download.rglob("*.zip"))
    os.utime(archive, ns=(archive.stat().st_atime_ns, archive.stat().st_mtime_ns + 10**9))
    load_or_build_index(download, show_progress=False)
    assert path.stat().st_mtime_ns != stamp


def test_a_manifest_that_does_not_match_its_record_is_rebuilt(download: Path) -> None:
    load_or_build_index(download, show_progress=False)
    path = default_manifest_path(download)
    path.write_text(path.read_text()[:200])  # as if cut short by hand
    assert len(load_or_build_index(download, show_progress=False).manifest) == 10
    assert len(path.read_text().splitlines()) == 11


def test_verification_finds_a_truncated_image_inside_an_archive(
    download: Path, tmp_path: Path
) -> None:
    index = load_or_build_index(download, show_progress=False)
    victim = index.manifest.iloc[3]
    archive = download / victim["archive"]
    member = victim["image"].split("::")[1]
    rewritten = tmp_path / "rewritten.zip"
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(rewritten, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            name = info.filename.encode("cp437").decode("cp949")
            target.writestr(name, data[: len(data) // 2] if name == member else data)
    shutil.move(rewritten, archive)  # now with UTF-8 names: both encodings are read
    manifest_path = tmp_path / "elsewhere" / "manifest.csv"
    index = load_or_build_index(download, manifest_path, verify_images=True, show_progress=False)
    problems = index.manifest.set_index("image")["image_problem"]
    assert problems[victim["image"]].startswith(
        f"{victim['image']}: cannot decode the image (corrupt or truncated data)"
    )
    assert (problems.drop(victim["image"]) == "").all()
    assert json.loads(manifest_path.with_suffix(".json").read_text())["verified"] is True
    with pytest.raises(BadImageError, match="1 unusable images"):
        load_manifest(download, manifest_path)
    kept = load_manifest(download, manifest_path, on_bad_image="skip")
    assert len(kept) == 9 and victim["image"] not in set(kept["image"])


def test_an_unwritable_manifest_path_is_named_before_indexing(download: Path) -> None:
    blocker = download.parent / "a_file"
    blocker.write_text("")
    target = blocker / "manifest.csv"
    with pytest.raises(OSError, match=f"Cannot write the manifest {target}: .*data.manifest_file"):
        load_or_build_index(download, target, show_progress=False)


def run_index_command(root: Path) -> subprocess.CompletedProcess:
    """``python -m scalp_ml.data.aihub.index data.root=<root>``, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "scalp_ml.data.aihub.index", f"data.root={root}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


def test_the_index_command_writes_the_manifest(download: Path) -> None:
    result = run_index_command(download)
    assert result.returncode == 0, result.stderr
    assert "10 usable images in" in result.stdout + result.stderr
    assert default_manifest_path(download).is_file()


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "scalp_ml.data.aihub.index"],
        [str(Path(sys.executable).with_name("scalp-index"))],
    ],
    ids=["python -m", "console script"],
)
def test_the_index_command_reports_a_bad_root(tmp_path: Path, command: list[str]) -> None:
    """From any folder, as a module or as the installed console script (which finds its
    config by its absolute path)."""
    result = subprocess.run(
        [*command, f"data.root={tmp_path / 'nowhere'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert f"Data root {tmp_path / 'nowhere'} does not exist" in result.stderr
