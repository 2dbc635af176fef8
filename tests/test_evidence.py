"""Every score with its session-bootstrap interval, and collapsed heads called out."""

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

from scalp_ml.evaluation.bootstrap import bootstrap_intervals
from scalp_ml.evaluation.evidence import Evidence, EvidenceSettings, gather_evidence
from scalp_ml.evaluation.metrics import majority_baseline
from scalp_ml.evaluation.predictions import Predictions
from scalp_ml.evaluation.report import write_report
from scalp_ml.evaluation.runner import score
from scalp_ml.labels import INDICATOR_NAMES
from tests.conftest import compose_train
from tests.sessions import simulate_sessions

COLLAPSED = INDICATOR_NAMES[3]  # follicular_erythema_pustule: always predicted "mild" below
SETTINGS = EvidenceSettings(resamples=200, seed=3)


def graded(seed: int) -> Predictions:
    """40 simulated sessions of five shots; one head predicts grade 1 (mild) for every image."""
    sessions, grades, predicted = simulate_sessions(np.random.default_rng(seed), 40)
    predicted[:, 3] = 1
    names = [f"image_{seed}_{i:03d}.jpg" for i in range(len(sessions))]
    return Predictions(names, list(sessions), grades, np.eye(4)[predicted])


@pytest.fixture(scope="module")
def checked() -> tuple[dict, dict, dict, Evidence]:
    predictions = {"val": graded(1), "test": graded(2)}
    train_grades = torch.from_numpy(simulate_sessions(np.random.default_rng(0), 60)[1])
    results = {split: score(found) for split, found in predictions.items()}
    baseline = {
        split: majority_baseline(train_grades, torch.from_numpy(found.grades))
        for split, found in predictions.items()
    }
    evidence = gather_evidence(predictions, results, baseline, SETTINGS)
    return predictions, results, baseline, evidence


def test_a_head_predicting_one_grade_is_flagged_and_logged(checked, caplog) -> None:
    predictions, results, baseline, _ = checked
    with caplog.at_level(logging.WARNING, logger="scalp_ml.evaluation.evidence"):
        evidence = gather_evidence(predictions, results, baseline, SETTINGS)
    reason = "predicts grade mild for every image"
    assert evidence.collapsed == {"val": {COLLAPSED: reason}, "test": {COLLAPSED: reason}}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all(COLLAPSED in text and reason in text for text in warnings)
    assert "val split" in warnings[0] and "test split" in warnings[1]


def test_intervals_resample_sessions_and_bracket_the_sklearn_estimate(checked) -> None:
    predictions, _, _, evidence = checked
    found = predictions["test"]
    intervals = evidence.intervals["test"]
    assert intervals == bootstrap_intervals(found.sessions, found.grades, found.predicted, 200, 3)
    per_indicator = [
        f1_score(t, p, labels=[0, 1, 2, 3], average="macro", zero_division=0)
        for t, p in zip(found.grades.T, found.predicted.T, strict=True)
    ]
    assert intervals["macro_f1"].estimate == pytest.approx(np.mean(per_indicator), abs=1e-12)
    hamming = (found.grades == found.predicted).mean()
    assert intervals["hamming_acc"].estimate == pytest.approx(hamming, abs=1e-12)
    for key in ("macro_f1", "hamming_acc", "qwk", *(f"macro_f1/{n}" for n in INDICATOR_NAMES)):
        interval = intervals[key]
        assert interval.low <= interval.estimate <= interval.high, key
    assert intervals["macro_f1"].high - intervals["macro_f1"].low > 0.01
    # Images of one person are correlated: resampling images would understate the uncertainty.
    by_image = bootstrap_intervals(found.names, found.grades, found.predicted, 200, 3)
    assert by_image["hamming_acc"].high - by_image["hamming_acc"].low < (
        intervals["hamming_acc"].high - intervals["hamming_acc"].low
    )


def test_report_and_metrics_json_show_intervals_and_mark_the_collapsed_head(
    checked, tmp_path: Path
) -> None:
    _, results, baseline, evidence = checked
    report = write_report(tmp_path, results, baseline, evidence, {"checkpoint": "x.ckpt"})
    document = json.loads((tmp_path / "metrics.json").read_text())
    for split in ("val", "test"):
        overall = document["intervals"][split]["macro_f1"]
        assert set(overall) == {"estimate", "low", "high"}
        assert overall["estimate"] == pytest.approx(document[split]["macro_f1"], abs=1e-6)
        assert overall["low"] <= overall["estimate"] <= overall["high"]
        assert document["collapsed"][split] == {COLLAPSED: "predicts grade mild for every image"}
    assert document["test"]["macro_f1"] == pytest.approx(float(results["test"]["macro_f1"]))
    lines = report.read_text().splitlines()
    row = next(line for line in lines if line.startswith(f"| {COLLAPSED} |"))
    assert "⚠ collapsed (val): predicts grade mild" in row and "⚠ collapsed (test)" in row
    assert not any("⚠" in line for line in lines if line.startswith("| microkeratin |"))
    interval = evidence.intervals["test"]["macro_f1"]
    overall_cell = f"{float(results['test']['macro_f1']):.3f} [{interval.low:.2f}, "
    assert overall_cell in next(line for line in lines if line.startswith("| **overall** |"))
    for key in ("hamming_acc", "qwk"):
        assert "[" in next(line for line in lines if line.startswith(f"| {key} |")), key
    legend = "95% confidence interval, percentile bootstrap over capture sessions (200 resamples"
    assert legend in report.read_text()


def test_the_training_run_reports_intervals_and_collapsed_heads(demo_run) -> None:
    run_dir, _ = demo_run
    document = json.loads((run_dir / "metrics.json").read_text())
    assert document["context"]["bootstrap"] == {
        "resamples": 1000,
        "seed": 0,
        "level": 0.95,
        "unit": "session",
        "collapse_margin": 0.02,
    }
    report = (run_dir / "report.md").read_text()
    for split in ("val", "test"):
        intervals = document["intervals"][split]
        for key in ("macro_f1", "hamming_acc", *(f"macro_f1/{n}" for n in INDICATOR_NAMES)):
            assert intervals[key]["estimate"] == pytest.approx(document[split][key], abs=1e-6)
            assert intervals[key]["low"] <= intervals[key]["estimate"] <= intervals[key]["high"]
        # The flags, recomputed from the predictions file and the majority baseline.
        table = pd.read_csv(run_dir / f"predictions_{split}.csv")
        majority = document["majority_baseline"][split]
        expected = {
            name
            for name in INDICATOR_NAMES
            if table[f"{name}_predicted"].nunique() == 1
            or document[split][f"macro_f1/{name}"] - majority[f"macro_f1/{name}"] <= 0.02
        }
        assert set(document["collapsed"][split]) == expected
        for name in expected:
            row = next(line for line in report.splitlines() if line.startswith(f"| {name} |"))
            assert f"⚠ collapsed ({split})" in row
    log = pd.read_csv(run_dir / "metrics.csv")
    counts = log["val/collapsed_heads"].dropna()
    assert len(counts) >= 2 and counts.between(0, 6).all()


def test_validation_warns_once_when_a_head_collapses(monkeypatch, caplog) -> None:
    from scalp_ml.training.job import build_module

    module = build_module(compose_train(["model=tiny"]))
    logged: dict[str, float] = {}
    monkeypatch.setattr(module, "log", lambda name, value, **_: logged.__setitem__(name, value))
    monkeypatch.setattr(module, "log_dict", lambda values, **_: None)
    module.trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, current_epoch=4)
    module.setup("fit")
    rng = np.random.default_rng(0)
    grades = torch.from_numpy(rng.integers(0, 4, (30, 6)))
    varied = torch.from_numpy(rng.integers(0, 4, (30, 6)))
    one_grade = varied.clone()
    one_grade[:, 5] = 2
    counts, warnings = [], []
    with caplog.at_level(logging.WARNING, logger="scalp_ml.module"):
        for predicted in (one_grade, one_grade, varied, one_grade):
            caplog.clear()
            module.val_metrics.update(predicted, grades)
            module.on_validation_epoch_end()
            counts.append(logged["val/collapsed_heads"])
            warnings.append([record.getMessage() for record in caplog.records])
    assert counts == [1, 1, 0, 1]
    assert [len(found) for found in warnings] == [1, 0, 0, 1]
    assert "hair_loss" in warnings[0][0] and "predicts grade moderate" in warnings[0][0]
    assert "epoch 4" in warnings[0][0]
