"""Decision offsets, test-time augmentation and weight averaging, end to end."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from scalp_ml.data.images import channels_first, letterbox, read_rgb
from scalp_ml.evaluation import offsets as offsets_module
from scalp_ml.evaluation.offsets import apply_offsets
from scalp_ml.inference.checkpoint import load_checkpoint
from scalp_ml.inference.export import export
from scalp_ml.inference.predictors import OnnxPredictor, load_predictor
from scalp_ml.labels import INDICATOR_NAMES
from tests.conftest import FAST, compose_train

TWO_EPOCHS = [*FAST, "trainer.max_epochs=2"]


def images(synthetic_root: Path, count: int = 4) -> np.ndarray:
    paths = sorted(synthetic_root.rglob("*.jpg"))[:count]
    return np.stack([channels_first(letterbox(read_rgb(path), 64, 64)) for path in paths])


def true_grades(table: pd.DataFrame) -> np.ndarray:
    return table[[f"{name}_true" for name in INDICATOR_NAMES]].to_numpy()


def test_offsets_are_fitted_on_validation_only_and_graded_with(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scalp_ml.training import job

    seen = []

    def spy(probabilities: np.ndarray, grades: np.ndarray, seed: int) -> np.ndarray:
        seen.append(grades)
        fitted = offsets_module.fit_offsets(probabilities, grades, seed)
        fitted[3, 3] += 0.5  # never all zero: the report must show both sides
        return fitted

    monkeypatch.setattr(job, "fit_offsets", spy)
    cfg = compose_train(
        [*TWO_EPOCHS, f"data.root={synthetic_root}", f"run_dir={tmp_path}", "decision_offsets=true"]
    )
    metrics = job.train(cfg)
    validation = pd.read_csv(tmp_path / "predictions_val.csv")
    test = pd.read_csv(tmp_path / "predictions_test.csv")
    (grades,) = seen
    assert np.array_equal(grades, true_grades(validation))  # the validation split, in order
    assert len(grades) != len(test) or not np.array_equal(grades, true_grades(test))

    tuned = tmp_path / "checkpoints" / "best-tuned.ckpt"
    document = json.loads((tmp_path / "metrics.json").read_text())
    offsets = np.array(document["decision_offsets"])
    assert offsets[3, 3] != 0 and document["context"]["checkpoint"] == str(tuned)
    stored = torch.load(tuned, weights_only=True)["state_dict"]["decision_offsets"]
    np.testing.assert_allclose(stored.numpy(), offsets, atol=1e-7)
    assert "test/without_offsets/macro_f1" in metrics and "without_offsets" in document
    assert (
        "Decision offsets (fitted on the validation split only)"
        in (tmp_path / "report.md").read_text()
    )
    # The graded probabilities are the best checkpoint's with the offsets applied.
    best = tmp_path / "checkpoints" / "best.ckpt"
    plain_model, tuned_model = load_predictor(best), load_predictor(tuned)
    batch = images(synthetic_root)
    np.testing.assert_allclose(
        tuned_model(batch), apply_offsets(plain_model(batch), offsets), atol=1e-6
    )


@pytest.mark.slow  # trains, tunes, exports and grades the export (~13 s)
def test_offsets_and_tta_are_inside_the_exported_file(
    best_checkpoint: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    checkpoint = torch.load(best_checkpoint, weights_only=True)
    offsets = torch.zeros(6, 4)
    offsets[:, 2] = 1.0
    checkpoint["state_dict"]["decision_offsets"] = offsets
    shifted = tmp_path / "shifted.ckpt"
    torch.save(checkpoint, shifted)
    onnx = export(shifted, "onnx", tmp_path / "shifted.onnx", tta="flip4")
    predictor = OnnxPredictor(onnx)
    assert predictor.metadata["model"]["tta"] == "flip4"
    assert predictor.metadata["decision_offsets"] == offsets.tolist()
    batch = images(synthetic_root)
    reference = load_predictor(best_checkpoint, tta="flip4")(batch)
    np.testing.assert_allclose(
        predictor(batch), apply_offsets(reference, offsets.numpy()), atol=1e-6
    )
    with pytest.raises(ValueError, match="has its test-time augmentation inside"):
        load_predictor(onnx, tta="hflip")


@pytest.mark.slow  # a training run with EMA, its checkpoints and export (~18 s)
def test_ema_weights_are_validated_saved_and_exported(synthetic_root: Path, tmp_path: Path) -> None:
    from scalp_ml.evaluation.command import evaluate
    from scalp_ml.train import train

    cfg = compose_train(
        [
            *TWO_EPOCHS,
            f"data.root={synthetic_root}",
            f"run_dir={tmp_path}",
            "callbacks=ema",
            "callbacks.ema.decay=0.9",
        ]
    )
    metrics = train(cfg)
    best = tmp_path / "checkpoints" / "best.ckpt"
    saved = torch.load(best, weights_only=True)
    averaged, raw = saved["state_dict"], saved["current_model_state"]
    weight = "net.heads.0.1.weight"
    assert not torch.equal(averaged[weight], raw[weight])  # the checkpoint holds the average
    loaded = load_checkpoint(best).model
    assert torch.equal(loaded.state_dict()[weight], averaged[weight])
    # The validation score that chose this checkpoint is the averaged weights' score.
    out = tmp_path / "eval"
    evaluated = evaluate(_eval_config(best, out))
    epoch = saved["epoch"]
    log = pd.read_csv(tmp_path / "metrics.csv")
    logged = log.loc[(log["epoch"] == epoch) & log["val/macro_f1"].notna(), "val/macro_f1"]
    assert logged.item() == pytest.approx(evaluated["val/macro_f1"], abs=1e-6)
    assert metrics["val/macro_f1"] == pytest.approx(evaluated["val/macro_f1"], abs=1e-6)
    onnx = OnnxPredictor(export(best, "onnx", tmp_path / "ema.onnx"))
    batch = images(synthetic_root)
    np.testing.assert_allclose(onnx(batch), load_predictor(best)(batch), atol=1e-6)


def _eval_config(checkpoint: Path, out_dir: Path):
    from tests.conftest import compose_config

    return compose_config(
        "eval", [f"ckpt_path={checkpoint}", f"out_dir={out_dir}", "split=val", "num_workers=0"]
    )
