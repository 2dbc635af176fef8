"""Cross-validation on the folds of the split file, and the fold models as one ensemble.

All slow (``make test-slow``): every test reads one shared cross-validated run of three folds
(about a minute on 2 cores); the folds themselves are tested fast in tests/test_splits.py.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from scalp_ml.data.splits import default_split_path
from scalp_ml.inference.ensemble import EnsembleError
from scalp_ml.labels import INDICATOR_NAMES
from tests.conftest import FAST, compose_config, compose_train, run_train

FOLDS = 3
SHORT = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2"]
pytestmark = pytest.mark.slow
PROBABILITY_COLUMNS = [
    f"{i}_p_{g}" for i in INDICATOR_NAMES for g in ("good", "mild", "moderate", "severe")
]


@pytest.fixture(scope="module")
def cv_run(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A 3-fold cross-validation in one job (``cross_validate=true``): its folder and result."""
    from scalp_ml.train import train
    from scalp_ml.training.cross_validation import cross_validate

    run_dir = tmp_path_factory.mktemp("cv")
    overrides = [*FAST, *SHORT, f"data.root={synthetic_root}", f"run_dir={run_dir}"]
    cfg = compose_train([*overrides, f"data.split.folds={FOLDS}", "cross_validate=true"])
    return run_dir, cross_validate(cfg, train)


def evaluate(ckpt_path: str, out_dir: Path, split: str = "test") -> pd.DataFrame:
    """``python -m scalp_ml.evaluate`` in-process; its predictions of the split."""
    from scalp_ml.evaluation.command import evaluate as run

    run(compose_config("eval", [f"ckpt_path={ckpt_path}", f"split={split}", f"out_dir={out_dir}"]))
    return pd.read_csv(out_dir / f"predictions_{split}.csv").set_index("name").sort_index()


def test_every_fold_trains_and_the_summary_and_out_of_fold_predictions_are_written(
    cv_run: tuple[Path, dict], synthetic_root: Path
) -> None:
    run_dir, result = cv_run
    folds = [run_dir / f"fold{fold}" for fold in range(FOLDS)]
    scores = [json.loads((f / "metrics.json").read_text())["val"]["macro_f1"] for f in folds]
    assert result["val/macro_f1"] == pytest.approx(np.mean(scores))
    summary = pd.read_csv(run_dir / "cv_summary.csv").set_index("metric")
    assert summary.loc["val/macro_f1", "mean"] == pytest.approx(np.mean(scores))
    assert summary.loc["val/macro_f1", "sd"] == pytest.approx(np.std(scores, ddof=1))
    assert summary.loc["val/macro_f1", [f"fold_{f}" for f in range(FOLDS)]].tolist() == (
        pytest.approx(scores)
    )
    split = json.loads(
        default_split_path(synthetic_root, (0.7, 0.15, 0.15), 42, "session", FOLDS).read_text()
    )
    oof = pd.read_csv(run_dir / "oof_predictions.csv")
    assert sorted(oof["name"]) == sorted(
        n for fold in split["folds_images"] for n in fold
    )  # each once, no test
    assert not set(oof["name"]) & set(split["splits"]["test"])
    for fold in range(FOLDS):
        own = pd.read_csv(folds[fold] / "predictions_val.csv")
        assert sorted(own["name"]) == split["folds_images"][fold]
        assert set(oof[oof["fold"] == fold]["name"]) == set(own["name"])


def test_decision_offsets_are_fitted_on_the_out_of_fold_predictions(
    cv_run: tuple[Path, dict],
) -> None:
    from sklearn.metrics import f1_score

    from scalp_ml.evaluation.offsets import apply_offsets, fit_offsets
    from scalp_ml.evaluation.predictions import Predictions

    run_dir, _ = cv_run
    oof = pd.read_csv(run_dir / "oof_predictions.csv", dtype={"name": str, "session": str})
    found = json.loads((run_dir / "oof_decision_offsets.json").read_text())[""]
    graded = Predictions.from_table(oof)
    np.testing.assert_allclose(found["offsets"], fit_offsets(graded.probabilities, graded.grades))
    reference = np.mean(
        [
            f1_score(
                oof[f"{name}_true"], oof[f"{name}_predicted"], labels=range(4), average="macro"
            )
            for name in INDICATOR_NAMES
        ]
    )
    assert found["oof_macro_f1"] == pytest.approx(reference)
    assert found["images"] == len(oof)
    crossfitted = graded.probabilities.copy()  # each fold shifted by the others' offsets
    for fold in range(FOLDS):
        inside = (oof["fold"] == fold).to_numpy()
        others = fit_offsets(graded.probabilities[~inside], graded.grades[~inside])
        crossfitted[inside] = apply_offsets(graded.probabilities[inside], others)
    predicted = crossfitted.argmax(axis=-1)
    expected = np.mean(
        [
            f1_score(graded.grades[:, i], predicted[:, i], labels=range(4), average="macro")
            for i in range(len(INDICATOR_NAMES))
        ]
    )
    assert found["oof_macro_f1_crossfitted_offsets"] == pytest.approx(expected)


def test_a_finished_cross_validation_is_reused_when_run_again(
    cv_run: tuple[Path, dict], synthetic_root: Path
) -> None:
    from scalp_ml.train import train
    from scalp_ml.training.cross_validation import cross_validate
    from scalp_ml.training.sweep import job_row

    run_dir, result = cv_run
    before = {p: p.stat().st_mtime_ns for p in run_dir.glob("fold*/metrics.json")}
    overrides = [*FAST, *SHORT, f"data.root={synthetic_root}", f"run_dir={run_dir}"]
    cfg = compose_train([*overrides, f"data.split.folds={FOLDS}", "cross_validate=true"])
    assert cross_validate(cfg, lambda _: pytest.fail("a finished fold was trained again"))[
        "val/macro_f1"
    ] == pytest.approx(result["val/macro_f1"])
    assert {p: p.stat().st_mtime_ns for p in run_dir.glob("fold*/metrics.json")} == before
    row = job_row(run_dir)  # an Optuna trial's row in the sweep summary: the folds' mean
    assert row["status"].startswith("finished (cross-validation")
    assert row["val/macro_f1"] == pytest.approx(result["val/macro_f1"])
    cfg.ckpt_path = "some.ckpt"
    with pytest.raises(ValueError, match=r"each fold resumes from its own"):
        cross_validate(cfg, train)
    with pytest.raises(ValueError, match=r"needs data\.split\.folds"):
        cross_validate(compose_train([*overrides, "cross_validate=true"]), train)


def test_the_ensemble_is_the_mean_of_its_members_through_checkpoints_and_one_onnx_file(
    cv_run: tuple[Path, dict], synthetic_root: Path, tmp_path: Path
) -> None:
    import onnx

    from scalp_ml.inference.export import export
    from scalp_ml.inference.prediction import predict

    run_dir, _ = cv_run
    members = [
        json.loads((run_dir / f"fold{f}" / "metrics.json").read_text())["context"]["checkpoint"]
        for f in range(FOLDS)
    ]
    own = [evaluate(m, tmp_path / f"member{i}") for i, m in enumerate(members)]
    mean = sum(table[PROBABILITY_COLUMNS] for table in own) / FOLDS
    ensemble = evaluate(str(run_dir), tmp_path / "ensemble")  # a folder of runs: its members
    np.testing.assert_allclose(ensemble[PROBABILITY_COLUMNS], mean, atol=1e-6)
    listed = evaluate("[" + ",".join(members) + "]", tmp_path / "listed")
    np.testing.assert_allclose(listed[PROBABILITY_COLUMNS], mean, atol=1e-6)
    context = json.loads((tmp_path / "ensemble" / "metrics.json").read_text())["context"]
    for index, (member, found) in enumerate(zip(members, context["members"], strict=True)):
        scored = json.loads((tmp_path / f"member{index}" / "metrics.json").read_text())
        assert found["checkpoint"] == member
        assert found["macro_f1"] == pytest.approx(scored["test"]["macro_f1"])

    onnx_file = export(str(run_dir), "onnx", tmp_path / "ensemble.onnx")
    metadata = json.loads(onnx.load(onnx_file).metadata_props[0].value)
    assert [m["checkpoint"] for m in metadata["members"]] == members
    assert [m["fold"] for m in metadata["members"]] == list(range(FOLDS))
    exported = evaluate(str(onnx_file), tmp_path / "onnx")
    np.testing.assert_allclose(exported[PROBABILITY_COLUMNS], mean, atol=1e-6)
    graded = predict(str(onnx_file), str(synthetic_root), tmp_path / "predict")
    assert len(graded) == len(list(synthetic_root.rglob("*.jpg")))
    with pytest.raises(ValueError, match=r"is an ensemble.*split=test"):
        evaluate(str(onnx_file), tmp_path / "onnx_val", split="val")
    with pytest.raises(ValueError, match=r"is an ensemble.*split=test"):
        evaluate(str(run_dir), tmp_path / "val", split="val")


def test_members_with_another_image_size_or_data_are_refused(
    cv_run: tuple[Path, dict], tmp_path: Path
) -> None:
    from scalp_ml.inference.ensemble import load_members

    run_dir, _ = cv_run
    first = run_dir / "fold0" / "checkpoints" / "best.ckpt"
    for key, value, named in [
        ("image_size", [48, 64], "image_size"),
        ("root", "/elsewhere", "data root"),
    ]:
        checkpoint = torch.load(first, weights_only=True)
        checkpoint["datamodule_hyper_parameters"][key] = value
        changed = tmp_path / f"changed-{key}.ckpt"
        torch.save(checkpoint, changed)
        with pytest.raises(EnsembleError, match=f"{changed.name} has {named}"):
            load_members([first, changed])
    checkpoint = torch.load(first, weights_only=True)
    checkpoint["ScalpDataModule"]["images_sha256"]["test"] = "0" * 64
    other_test = tmp_path / "other-test.ckpt"
    torch.save(checkpoint, other_test)
    with pytest.raises(EnsembleError, match=r"other-test\.ckpt was tested on other images"):
        load_members([first, other_test])
    with pytest.raises(EnsembleError, match="at least two"):
        load_members([first])
    with pytest.raises(EnsembleError, match="none of its sub-folders holds a finished run"):
        evaluate(str(tmp_path), tmp_path / "out")


def test_a_three_fold_multirun_writes_the_summary_and_out_of_fold_predictions(
    synthetic_root: Path, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    run_train(
        "-m",
        *FAST,
        *SHORT,
        f"data.root={synthetic_root}",
        f"hydra.sweep.dir={sweep_dir}",
        f"data.split.folds={FOLDS}",
        f"data.split.fold=range({FOLDS})",
        "hydra/launcher=local",  # submitit, as hydra/launcher=slurm runs them on a cluster
    )
    summary = pd.read_csv(sweep_dir / "cv_summary.csv").set_index("metric")
    assert summary.loc["val/macro_f1", "folds_finished"] == f"{FOLDS}/{FOLDS}"
    oof = pd.read_csv(sweep_dir / "oof_predictions.csv")
    assert sorted(oof["fold"].unique()) == list(range(FOLDS))
    assert oof["name"].is_unique
