import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalp_ml.predict import find_images, predict
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def photos(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for image in sorted(synthetic_root.rglob("*.jpg"))[:3]:
        shutil.copy(image, folder / image.name)
    (folder / "nested").mkdir()
    (folder / "nested" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return folder


def run_predict(ckpt: Path, inputs: str, out_dir: Path, *extra: str) -> list[dict]:
    overrides = [f"ckpt_path={ckpt}", f"inputs={inputs}", f"out_dir={out_dir}", *extra]
    return predict(compose_config("predict", overrides))


def test_a_corrupt_image_is_an_error_row_and_the_rest_are_graded(
    best_checkpoint: Path, photos: Path, tmp_path: Path
) -> None:
    records = run_predict(best_checkpoint, str(photos), tmp_path)
    assert len(records) == 4
    broken = [r for r in records if r["error"]]
    assert len(broken) == 1 and "broken.jpg" in broken[0]["error"]
    graded = [r for r in records if not r["error"]]
    first = graded[0]["indicators"][3]
    assert first["name"] == "follicular_erythema_pustule" and first["korean"] == "모낭홍반/농포"
    assert sum(first["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert first["grade_name"] == ["good", "mild", "moderate", "severe"][first["grade"]]
    table = pd.read_csv(tmp_path / "predictions.csv", encoding="utf-8-sig")
    assert len(table) == 3 * 6 + 1
    assert {"korean", "grade_korean", "p_good", "p_severe"} <= set(table.columns)
    assert json.loads((tmp_path / "predictions.json").read_text(encoding="utf-8")) == records


def test_inputs_may_be_a_file_or_a_glob(photos: Path) -> None:
    one = sorted(photos.glob("*.jpg"))[0]
    assert find_images(str(one)) == [one]
    assert len(find_images(str(photos / "**" / "*.jpg"))) == 4


def test_nothing_to_grade_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(f"folder {tmp_path} holds no")):
        find_images(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="matches no files"):
        find_images(str(tmp_path / "*.jpg"))


def test_an_exported_onnx_file_predicts_like_its_checkpoint(
    best_checkpoint: Path, photos: Path, tmp_path: Path, onnx_file: Path
) -> None:
    from_checkpoint = run_predict(best_checkpoint, str(photos / "*.jpg"), tmp_path / "ckpt")
    from_onnx = run_predict(onnx_file, str(photos / "*.jpg"), tmp_path / "onnx")
    for ours, theirs in zip(from_checkpoint, from_onnx, strict=True):
        for a, b in zip(ours["indicators"], theirs["indicators"], strict=True):
            np.testing.assert_allclose(
                list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-4
            )


def test_explain_writes_one_grad_cam_grid_per_readable_image(
    best_checkpoint: Path, photos: Path, tmp_path: Path
) -> None:
    run_predict(best_checkpoint, str(photos), tmp_path, "explain=true")
    grids = sorted((tmp_path / "explain").glob("*.png"))
    assert [g.stem for g in grids] == sorted(p.stem for p in photos.glob("*.jpg"))
