import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from scalp_ml.data.aihub import LabelError, build_manifest, read_label, session_of
from scalp_ml.labels import INDICATOR_NAMES

NAME = "0013_A2LEBJJDE00060O_1606386139601_3_TH"


def write_label(path: Path, content: dict | str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    path.write_text(text, encoding=encoding)
    return path


def label(**grades: object) -> dict:
    values = {f"value_{k}": "0" for k in range(1, 7)}
    values.update(grades)
    return {"image_file_name": f"{NAME}.jpg", **values}


def test_manifest_of_the_synthetic_download(synthetic_root: Path) -> None:
    manifest = build_manifest(synthetic_root)
    assert len(manifest) == 240 and manifest["name"].is_unique
    row = manifest.iloc[0]
    assert (synthetic_root / row["image"]).is_file()
    stored = json.loads(next(synthetic_root.rglob(f"{Path(row['name']).stem}.json")).read_text())
    assert [row[name] for name in INDICATOR_NAMES] == [
        int(stored[f"value_{k}"]) for k in range(1, 7)
    ]
    assert row["session"] == "_".join(Path(row["name"]).stem.split("_")[:3])
    assert manifest.groupby("session").size().max() <= 5


def test_grades_may_be_ints_or_strings_and_a_bom_is_tolerated(tmp_path: Path) -> None:
    path = write_label(tmp_path / "a.json", label(value_2=3, value_5=" 2"), encoding="utf-8-sig")
    parsed = read_label(path)
    assert parsed.grades == (0, 3, 0, 0, 2, 0) and parsed.image_name == f"{NAME}.jpg"


def test_image_name_falls_back_to_the_json_stem(tmp_path: Path) -> None:
    content = label()
    del content["image_file_name"]
    assert read_label(write_label(tmp_path / f"{NAME}.json", content)).image_name == f"{NAME}.jpg"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a UTF-8 JSON"),
        ("[1, 2]", "expected a JSON object"),
        ({k: v for k, v in label().items() if k != "value_4"}, "missing key 'value_4'"),
        (label(value_3="4"), "'value_3' is 4, outside 0-3"),
        (label(value_6="mild"), "'value_6' is 'mild', not an integer"),
        (label(value_1=1.5), "'value_1' is 1.5, not an integer"),
    ],
)
def test_bad_labels_name_the_file_and_the_problem(tmp_path: Path, content, message: str) -> None:
    path = write_label(tmp_path / "bad.json", content)
    with pytest.raises(LabelError, match=message) as error:
        read_label(path)
    assert str(path) in str(error.value)


def test_duplicates_merge_and_conflicts_name_both_files(
    tmp_path: Path, synthetic_root: Path
) -> None:
    image = next(synthetic_root.rglob("*.jpg"))
    shutil.copy(image, tmp_path / f"{NAME}.jpg")
    write_label(tmp_path / "first" / f"{NAME}.json", label(value_1="2"))
    write_label(tmp_path / "second" / f"{NAME}.json", label(value_1="2"))
    assert len(build_manifest(tmp_path)) == 1
    write_label(tmp_path / "third" / f"{NAME}.json", label(value_1="3"))
    with pytest.raises(LabelError, match="conflicting labels") as error:
        build_manifest(tmp_path)
    assert "first" in str(error.value) and "third" in str(error.value)


def test_labels_without_images_are_skipped(tmp_path: Path, synthetic_root: Path) -> None:
    shutil.copy(next(synthetic_root.rglob("*.jpg")), tmp_path / f"{NAME}.jpg")
    write_label(tmp_path / f"{NAME}.json", label())
    write_label(tmp_path / "orphan.json", label() | {"image_file_name": "orphan.jpg"})
    manifest = build_manifest(tmp_path)
    assert manifest["name"].tolist() == [f"{NAME}.jpg"]


def test_missing_or_empty_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_manifest(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="No label JSON"):
        build_manifest(tmp_path)


def test_session_of_parses_the_aihub_name_and_tolerates_others() -> None:
    assert session_of(NAME) == {
        "session": "0013_A2LEBJJDE00060O_1606386139601",
        "site": "0013",
        "device": "A2LEBJJDE00060O",
        "region": "TH",
    }
    assert session_of("photo 12")["session"] == "photo 12"
    assert isinstance(pd.DataFrame([session_of(NAME)]), pd.DataFrame)
