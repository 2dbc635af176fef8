import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalp_ml.inference.prediction import (
    SHOWN_ROWS,
    NothingGradedError,
    find_images,
    predict,
    print_summary,
)
from scalp_ml.labels import GRADES, INDICATOR_NAMES
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def photos(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    first, second, third = sorted(synthetic_root.rglob("*.jpg"))[:3]
    shutil.copy(first, folder / first.name)
    shutil.copy(second, folder / second.name)
    (folder / "nested").mkdir()
    shutil.copy(third, folder / "nested" / first.name)  # same file name, another folder
    (folder / "nested" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return folder


def run_predict(ckpt: Path, inputs: str, out_dir: Path, *extra: str) -> list[dict]:
    overrides = [f"ckpt_path={ckpt}", f"inputs={inputs}", f"out_dir={out_dir}", *extra]
    cfg = compose_config("predict", overrides)
    return predict(
        cfg.ckpt_path, cfg.inputs, Path(cfg.out_dir), cfg.explain, cfg.device, cfg.batch_size
    )


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
    table = pd.read_csv(tmp_path / "predictions.csv", encoding="utf-8-sig", dtype=str)
    assert len(table) == 3 * 6 + 1
    assert {"korean", "grade_korean", "p_good", "p_severe"} <= set(table.columns)
    assert set(table["grade"].dropna()) <= {"0", "1", "2", "3"}  # integers, never "0.0"
    assert json.loads((tmp_path / "predictions.json").read_text(encoding="utf-8")) == records


def test_when_no_image_can_be_graded_the_columns_stay_and_the_command_fails(
    best_checkpoint: Path, photos: Path, tmp_path: Path
) -> None:
    with pytest.raises(NothingGradedError, match="None of the 1 images"):
        run_predict(best_checkpoint, str(photos / "nested" / "broken.jpg"), tmp_path)
    table = pd.read_csv(tmp_path / "predictions.csv", encoding="utf-8-sig")
    assert list(table.columns[:5]) == ["file", "error", "name", "korean", "grade"]
    assert len(table) == 1 and table["grade"].isna().all()


def test_the_terminal_table_shows_the_first_images_and_counts_the_rest(
    capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # a wide terminal: no file name is shortened
    records = [
        {"file": f"img{i}.jpg", "error": "unreadable", "indicators": None} for i in range(300)
    ]
    print_summary(records, tmp_path)
    shown = capsys.readouterr().out
    assert f"img{SHOWN_ROWS - 1}.jpg" in shown and f"img{SHOWN_ROWS}.jpg" not in shown
    assert f"and {300 - SHOWN_ROWS} more" in shown


def test_inputs_may_be_a_file_or_a_glob(photos: Path) -> None:
    one = sorted(photos.glob("*.jpg"))[0]
    assert find_images(str(one)) == [one]
    assert len(find_images(str(photos / "**" / "*.jpg"))) == 4


def test_nothing_to_grade_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(f"folder {tmp_path} holds no")):
        find_images(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="matches no files"):
        find_images(str(tmp_path / "*.jpg"))


def test_evaluate_predict_and_the_onnx_export_give_the_same_probabilities(
    best_checkpoint: Path, onnx_file: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    from scalp_ml.evaluation.command import evaluate

    evaluate(
        compose_config(
            "eval",
            [f"ckpt_path={best_checkpoint}", f"out_dir={tmp_path / 'eval'}", "num_workers=0"],
        )
    )
    evaluated = pd.read_csv(tmp_path / "eval" / "predictions_test.csv").set_index("name")
    files = {path.name: path for path in synthetic_root.rglob("*.jpg")}
    test_images = tmp_path / "test_images"
    test_images.mkdir()
    for name in evaluated.index:
        shutil.copy(files[name], test_images / name)
    for model in (best_checkpoint, onnx_file):
        records = run_predict(model, str(test_images), tmp_path / model.suffix)
        assert len(records) == len(evaluated)
        for record in records:
            expected = evaluated.loc[Path(record["file"]).name]
            for item, name in zip(record["indicators"], INDICATOR_NAMES, strict=True):
                got = [item["probabilities"][grade] for grade in GRADES]
                want = [expected[f"{name}_p_{grade}"] for grade in GRADES]
                np.testing.assert_allclose(got, want, atol=1e-6)


def test_predicting_with_onnx_imports_neither_torch_nor_lightning(
    onnx_file: Path, photos: Path, tmp_path: Path
) -> None:
    # The real command, as a user runs it (Hydra, its callbacks and all).
    script = (
        "import runpy, sys; "
        f"sys.argv = ['scalp_ml.predict', 'ckpt_path={onnx_file}', "
        f"\"inputs='{photos / '*.jpg'}'\", 'out_dir={tmp_path}', 'hydra.run.dir={tmp_path}']; "
        "runpy.run_module('scalp_ml.predict', run_name='__main__'); "
        "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert len(pd.read_csv(tmp_path / "predictions.csv", encoding="utf-8-sig")) == 2 * 6


def test_explain_writes_one_small_figure_per_readable_image_without_overwriting(
    best_checkpoint: Path, photos: Path, tmp_path: Path
) -> None:
    run_predict(best_checkpoint, str(photos), tmp_path, "explain=true")
    figures = sorted(
        path.relative_to(tmp_path / "explain") for path in (tmp_path / "explain").rglob("*.jpg")
    )
    expected = sorted(
        path.relative_to(photos).with_suffix(".jpg")
        for path in photos.rglob("*.jpg")
        if path.name != "broken.jpg"
    )
    assert figures == expected and len(figures) == 3  # photos/X.jpg and photos/nested/X.jpg
    for figure in figures:
        assert 0 < (tmp_path / "explain" / figure).stat().st_size < 500_000
