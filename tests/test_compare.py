import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score

from scalp_ml.compare import CompareError, compare, load_predictions, main
from scalp_ml.evaluation.bootstrap import DIFFERENCE_KEYS, paired_difference
from scalp_ml.labels import GRADES, INDICATOR_NAMES
from tests.sessions import simulate_sessions

REPO = Path(__file__).parents[1]


def write_evaluation(
    directory: Path,
    sessions: np.ndarray,
    grades: np.ndarray,
    predicted: np.ndarray,
    split_sha256: str = "a" * 64,
) -> Path:
    """An evaluation directory: ``predictions_test.csv`` (rows shuffled) and ``metrics.json``."""
    table = pd.DataFrame({"name": [f"image_{i:04d}.jpg" for i in range(len(sessions))]})
    table["session"] = sessions
    for index, name in enumerate(INDICATOR_NAMES):
        table[f"{name}_true"] = grades[:, index]
        table[f"{name}_predicted"] = predicted[:, index]
        for grade, grade_name in enumerate(GRADES):
            table[f"{name}_p_{grade_name}"] = (predicted[:, index] == grade).astype(float)
    directory.mkdir()
    table = table.sample(frac=1, random_state=len(directory.name))  # row order must not matter
    table.to_csv(directory / "predictions_test.csv", index=False)
    context = {"split_sha256": split_sha256, "split_strategy": "session", "split_file": "s.json"}
    (directory / "metrics.json").write_text(json.dumps({"context": context}))
    return directory


@pytest.fixture
def models(tmp_path: Path) -> tuple[Path, Path, tuple[np.ndarray, ...]]:
    """Two evaluation directories of models A and B (B more often right) on 40 sessions."""
    rng = np.random.default_rng(0)
    sessions, grades, predicted_a = simulate_sessions(rng, 40)
    predicted_b = np.where(rng.random(grades.shape) < 0.5, grades, predicted_a)
    a = write_evaluation(tmp_path / "a", sessions, grades, predicted_a)
    b = write_evaluation(tmp_path / "model_b", sessions, grades, predicted_b)
    return a, b, (sessions, grades, predicted_a, predicted_b)


def rewrite_csv(directory: Path, change) -> Path:
    csv = directory / "predictions_test.csv"
    change(pd.read_csv(csv)).to_csv(csv, index=False)
    return csv


def test_numbers_equal_paired_difference_and_sklearn(models) -> None:
    a, b, (sessions, grades, predicted_a, predicted_b) = models
    result = compare(load_predictions(a, "test"), load_predictions(b, "test"), 300, 3)
    expected = paired_difference(sessions, grades, predicted_a, predicted_b, 300, 3)
    assert list(result["metrics"]) == list(DIFFERENCE_KEYS)
    for key, difference in expected.items():
        numbers = result["metrics"][key]
        for field in ("difference", "low", "high", "p_value"):
            assert numbers[field] == pytest.approx(getattr(difference, field), abs=1e-12)
    for model, predicted in (("a", predicted_a), ("b", predicted_b)):
        f1 = [
            f1_score(t, p, labels=[0, 1, 2, 3], average="macro", zero_division=0)
            for t, p in zip(grades.T, predicted.T, strict=True)
        ]
        assert result["metrics"]["macro_f1"][model] == pytest.approx(np.mean(f1), abs=1e-12)
        hamming = accuracy_score(grades.ravel(), predicted.ravel())
        assert result["metrics"]["hamming_acc"][model] == pytest.approx(hamming, abs=1e-12)
    assert (result["images"], result["sessions"], result["resamples"]) == (200, 40, 300)


def test_refuses_different_split_hashes(models, capsys) -> None:
    a, b, _ = models
    (b / "metrics.json").write_text(json.dumps({"context": {"split_sha256": "b" * 64}}))
    assert main([str(a), str(b)]) == 2
    error = capsys.readouterr().err
    assert "different splits" in error and str(a) in error and str(b) in error


def test_refuses_different_image_sets(models) -> None:
    a, b, _ = models
    (b / "metrics.json").unlink()  # the split hash unknown: the image names still differ
    rewrite_csv(b, lambda table: table.iloc[1:])
    with pytest.raises(CompareError, match=r"grade different images: 1 only in A, 0 only in B"):
        compare(load_predictions(a, "test"), load_predictions(b, "test"), 100, 0)


def test_refuses_different_true_grades(models) -> None:
    a, b, _ = models

    def change_one_grade(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[0, "dandruff_true"] = (table.loc[0, "dandruff_true"] + 1) % 4
        return table

    rewrite_csv(b, change_one_grade)
    with pytest.raises(CompareError, match=r"true grades of 1 image\(s\).*not the same split"):
        compare(load_predictions(a, "test"), load_predictions(b, "test"), 100, 0)


def test_missing_file_and_missing_columns_are_named(models, capsys) -> None:
    a, b, _ = models
    assert main([str(a), str(b), "--split", "val"]) == 2
    assert f"{a / 'predictions_val.csv'}: no such file" in capsys.readouterr().err
    csv = rewrite_csv(b, lambda table: table.drop(columns=["session", "hair_loss_predicted"]))
    with pytest.raises(CompareError, match=r"missing column.*session, hair_loss_predicted") as info:
        load_predictions(csv, "test")
    assert str(csv) in str(info.value)


def test_rejects_grades_outside_the_scale(models) -> None:
    _, b, _ = models
    csv = rewrite_csv(b, lambda table: table.assign(excess_sebum_predicted=7))
    with pytest.raises(CompareError, match=r"other than 0\.\.3 in column.*excess_sebum_pred"):
        load_predictions(csv, "test")


def test_command_line_takes_csv_files_and_writes_json(models, tmp_path, capsys) -> None:
    a, b, _ = models
    out = tmp_path / "comparison.json"
    files = [f"{a}/predictions_test.csv", f"{b}/predictions_test.csv"]
    assert main([*files, "--resamples", "200", "--seed", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "200 images in 40 sessions" in printed and "200 resamples, seed 5" in printed
    written = json.loads(out.read_text())
    direct = compare(load_predictions(a, "test"), load_predictions(b, "test"), 200, 5)
    assert written == json.loads(json.dumps(direct))
    for key in DIFFERENCE_KEYS:
        line = next(line for line in printed.splitlines() if line.split()[:1] == [key])
        assert f"{direct['metrics'][key]['difference']:+.3f}" in line


def test_module_runs_as_a_command(models) -> None:
    a, b, _ = models
    done = subprocess.run(
        [sys.executable, "-m", "scalp_ml.compare", str(a), str(b), "--resamples", "100"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert "macro_f1/follicular_erythema_pustule" in done.stdout
    assert "100 resamples, seed 0" in done.stdout


def test_importing_compare_does_not_import_torch() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import scalp_ml.compare, sys; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert done.stdout.strip() == "False"


def test_a_training_run_compared_with_itself_differs_by_nothing(demo_run) -> None:
    run_dir, _ = demo_run
    run = load_predictions(run_dir, "test")
    result = compare(run, run, 200, 0)
    context = json.loads((run_dir / "metrics.json").read_text())["context"]
    assert result["images"] == context["images"]["test"]
    for key in ("macro_f1", "hamming_acc", *(f"macro_f1/{name}" for name in INDICATOR_NAMES)):
        numbers = result["metrics"][key]
        assert numbers["difference"] == numbers["low"] == numbers["high"] == 0, key
        assert numbers["p_value"] == 1, key


def test_a_run_and_predictions_from_another_split_are_refused(demo_run, tmp_path, capsys) -> None:
    run_dir, _ = demo_run
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    shutil.copy(run_dir / "predictions_test.csv", tampered)
    document = json.loads((run_dir / "metrics.json").read_text())
    document["context"]["split_sha256"] = "0" * 64
    (tampered / "metrics.json").write_text(json.dumps(document))
    # Another split file whose test images are the same (a fold split's): compared.
    assert main([str(run_dir), str(tampered), "--resamples", "50"]) == 0
    document["context"]["images_sha256"]["test"] = "1" * 64
    (tampered / "metrics.json").write_text(json.dumps(document))
    assert main([str(run_dir), str(tampered), "--resamples", "50"]) == 2
    error = capsys.readouterr().err
    assert "different splits" in error and str(tampered) in error
