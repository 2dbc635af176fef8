import json
import re
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from scalp_ml.data.aihub.label_file import LabelError
from scalp_ml.data.aihub.pairing import build_index, session_of, subset_of, usable_manifest
from scalp_ml.data.aihub.reader import Download, list_files
from scalp_ml.data.images import BadImageError
from scalp_ml.data.synthetic import generate
from scalp_ml.labels import INDICATOR_NAMES

NAME = "0013_A2LEBJJDE00060O_1606386139601_3_TH"
KEYS = ["name", "session", "site", "device", "region", "subset", *INDICATOR_NAMES]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An extracted download: 15 images, a third filed under two condition folders."""
    root = tmp_path_factory.mktemp("tree")
    return generate(root, n_images=15, seed=5, duplicate_fraction=0.35, workers=1)


@pytest.fixture(scope="module")
def zips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same download as it comes: zip archives with CP949 member names."""
    root = tmp_path_factory.mktemp("zips")
    return generate(root, n_images=15, seed=5, duplicate_fraction=0.35, workers=1, archives=True)


@pytest.fixture
def download(tree: Path, tmp_path: Path) -> Path:
    """A copy of the extracted download that a test may spoil."""
    return Path(shutil.copytree(tree, tmp_path / "download"))


def label_files(root: Path) -> list[Path]:
    """Label files of images filed once (no second copy), sorted."""
    labels = sorted(p for p in root.rglob("*.json") if not p.name.startswith("."))
    stems = [p.stem for p in labels]
    return [p for p in labels if stems.count(p.stem) == 1]


def test_manifest_of_the_synthetic_download(synthetic_root: Path) -> None:
    manifest = build_index(synthetic_root, show_progress=False).manifest
    assert len(manifest) == 240 and manifest["name"].is_unique
    row = manifest.iloc[0]
    assert (synthetic_root / row["image"]).is_file()
    stored = json.loads(next(synthetic_root.rglob(f"{Path(row['name']).stem}.json")).read_text())
    assert [row[name] for name in INDICATOR_NAMES] == [
        int(stored[f"value_{k}"]) for k in range(1, 7)
    ]
    assert row["session"] == "_".join(Path(row["name"]).stem.split("_")[:3])
    assert manifest.groupby("session").size().max() <= 5
    assert set(manifest["subset"]) == {"Training", "Validation"}
    assert (manifest["width"] == 640).all() and (manifest["height"] == 480).all()


def test_duplicates_across_condition_folders_are_one_sample_and_counted(tree: Path) -> None:
    index = build_index(tree, show_progress=False)
    copies = len(list(tree.rglob("*.jpg"))) - 15
    assert copies > 0
    assert len(index.manifest) == 15 and index.manifest["name"].is_unique
    assert index.report.duplicate_images == copies and index.report.duplicate_labels == copies
    assert index.report.label_files == index.report.image_files == 15 + copies
    assert (index.manifest["label_conflict"] == "").all()


def test_zip_archives_with_cp949_names_give_the_manifest_of_the_extracted_tree(
    tree: Path, zips: Path
) -> None:
    archive = next(zips.rglob("*.zip"))
    with zipfile.ZipFile(archive) as bundle:
        info = bundle.infolist()[0]
    assert not info.flag_bits & 0x800  # no UTF-8 flag: the name is CP949 bytes
    assert info.filename.encode("cp437").decode("cp949").startswith(archive.stem + "/")
    from_tree = build_index(tree, show_progress=False)
    from_zips = build_index(zips, show_progress=False)
    assert from_zips.report == from_tree.report
    pd.testing.assert_frame_equal(from_zips.manifest[KEYS], from_tree.manifest[KEYS])
    row = from_zips.manifest.iloc[0]
    archive_path, member = row["image"].split("::")
    assert archive_path == row["archive"] and archive_path.endswith(".zip")
    assert member.startswith("[원천]") and member.endswith(row["name"])
    extracted = tree / from_tree.manifest.iloc[0]["image"]
    assert Download(zips).read(row["image"]) == extracted.read_bytes()


def test_any_nesting_pairs_labels_and_images_by_file_name(download: Path) -> None:
    expected = build_index(download, show_progress=False).manifest
    for path in [*download.rglob("*.jpg"), *label_files(download)]:
        target = download / "deep" / "er" / path.suffix[1:] / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    moved = build_index(download, show_progress=False).manifest
    assert moved["name"].tolist() == expected["name"].tolist()
    assert moved["image"].str.startswith("deep/er/jpg/").all()


def test_a_conflicting_duplicate_is_an_error_naming_both_files_or_dropped(download: Path) -> None:
    first = label_files(download)[0]
    content = json.loads(first.read_text())
    content["value_1"] = str((int(content["value_1"]) + 1) % 4)
    other = download / "Training" / "02.라벨링데이터" / "[라벨]미세각질_3.중증" / first.name
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_text(json.dumps(content))
    index = build_index(download, show_progress=False)
    with pytest.raises(LabelError, match="1 images with conflicting labels") as error:
        usable_manifest(index)
    message = str(error.value)
    assert f"{first.stem}.jpg: conflicting labels" in message
    assert (
        str(first.relative_to(download)) in message and str(other.relative_to(download)) in message
    )
    assert "data.on_conflict=drop" in message
    kept = usable_manifest(index, on_conflict="drop")
    assert len(kept) == 14 and f"{first.stem}.jpg" not in set(kept["name"])


def test_bad_label_files_are_an_error_naming_them_or_skipped(download: Path) -> None:
    broken = label_files(download)[0]
    broken.write_text('{"value_1": "0", ')
    cp_garbage = label_files(download)[1]
    cp_garbage.write_bytes(b"\xff\xfe\x00\xd8\x81")
    index = build_index(download, show_progress=False)
    with pytest.raises(LabelError, match="2 unusable label files") as error:
        usable_manifest(index)
    assert f"{broken.relative_to(download)}: not valid JSON" in str(error.value)
    assert f"{cp_garbage.relative_to(download)}: not text in UTF-8 or CP949" in str(error.value)
    kept = usable_manifest(index, on_bad_label="skip")
    assert f"{broken.stem}.jpg" not in set(kept["name"])
    assert len(index.report.bad_labels) == 2


def test_a_label_file_far_larger_than_a_label_is_never_read(download: Path) -> None:
    huge = label_files(download)[0]
    with huge.open("ab") as file:  # 1.5 MB of trailing spaces: still valid JSON, not a label
        file.write(b" " * 1_500_000)
    index = build_index(download, show_progress=False)
    assert index.report.bad_labels == [
        f"{huge.relative_to(download)}: {huge.stat().st_size:,} bytes, far larger than a label "
        "(at most 1,000,000); not read"
    ]
    with pytest.raises(LabelError, match="far larger than a label"):
        usable_manifest(index)
    assert f"{huge.stem}.jpg" not in set(usable_manifest(index, on_bad_label="skip")["name"])


def test_labels_without_image_and_images_without_label_are_reported_and_skipped(
    download: Path,
) -> None:
    lonely_label = label_files(download)[0]
    for image in download.rglob(f"{lonely_label.stem}.jpg"):
        image.unlink()
    lonely_image = next(p for p in download.rglob("*.jpg"))
    for label in download.rglob(f"{lonely_image.stem}.json"):
        label.unlink()
    index = build_index(download, show_progress=False)
    assert index.report.labels_without_image == [str(lonely_label.relative_to(download))]
    assert index.report.images_without_label == [str(lonely_image.relative_to(download))]
    assert len(usable_manifest(index)) == 13


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "zero-byte file"), (b"<html>not found</html>", "not an image file")],
)
def test_images_that_are_no_images_are_found_without_decoding(
    download: Path, content: bytes, problem: str
) -> None:
    image = sorted(download.rglob("*.jpg"))[0]
    for copy in download.rglob(image.name):
        copy.write_bytes(content)
    index = build_index(download, show_progress=False)
    with pytest.raises(BadImageError, match="1 unusable images") as error:
        usable_manifest(index)
    location = index.manifest.set_index("name").loc[image.name, "image"]
    assert f"{location}: {problem}" in str(error.value)
    assert len(usable_manifest(index, on_bad_image="skip")) == 14


def test_a_spoiled_copy_of_a_duplicate_image_gives_way_to_a_readable_one(download: Path) -> None:
    stems = [p.stem for p in download.rglob("*.jpg")]
    twice = sorted(p for p in download.rglob("*.jpg") if stems.count(p.stem) == 2)[0]
    twice.write_bytes(b"")
    row = build_index(download, show_progress=False).manifest.set_index("name").loc[twice.name]
    assert row["image_problem"] == "" and row["image"] != str(twice.relative_to(download))
    assert row["width"] == 640


def test_empty_or_missing_root_is_an_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"Data root {tmp_path / 'nowhere'} does not exist"):
        build_index(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=f"Data root {tmp_path} is empty"):
        build_index(tmp_path)
    (tmp_path / "notes.txt").write_text("no data")
    with pytest.raises(FileNotFoundError, match=f"No label JSON files found under {tmp_path}"):
        build_index(tmp_path)


def test_policies_must_be_known_values(tree: Path) -> None:
    message = "data.on_conflict must be one of error|drop, got 'keep'"
    with pytest.raises(ValueError, match=re.escape(message)):
        usable_manifest(build_index(tree, show_progress=False), on_conflict="keep")


def test_hidden_folders_are_not_data(download: Path) -> None:
    hidden = download / ".ipynb_checkpoints"
    hidden.mkdir()
    shutil.copy(label_files(download)[0], hidden / "stray.json")
    assert all(not f.path.startswith(".") for f in list_files(download))


def test_session_and_subset_come_from_the_name_and_the_folders() -> None:
    assert session_of(NAME) == {
        "session": "0013_A2LEBJJDE00060O_1606386139601",
        "site": "0013",
        "device": "A2LEBJJDE00060O",
        "region": "TH",
    }
    assert session_of("photo 12")["session"] == "photo 12"
    assert subset_of("1.Training/[원천]x.zip::y.jpg") == "Training"
    assert subset_of("VALIDATION/a/b.jpg") == "Validation"
    assert subset_of("misc/b.jpg") == ""
