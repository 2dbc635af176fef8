"""Rectangular input (data.image_size=[height, width]): cache, training, export and Grad-CAM."""

from pathlib import Path

import numpy as np
import pytest

from scalp_ml.data.dataset import Photographs
from scalp_ml.inference.export import export
from scalp_ml.inference.prediction import predict
from scalp_ml.inference.predictors import OnnxPredictor, load_predictor
from tests.conftest import FAST, compose_train


@pytest.mark.slow  # a whole train, export, predict and Grad-CAM run (~20 s)
def test_a_rectangular_input_trains_exports_predicts_and_explains(
    synthetic_root: Path, tmp_path: Path
) -> None:
    from scalp_ml.train import train

    overrides = [
        *FAST,
        f"data.root={synthetic_root}",
        "data.image_size=[48,64]",  # the photographs' 3:4, no padding
        "data.cache=memmap",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"run_dir={tmp_path / 'run'}",
        "trainer.max_epochs=1",
    ]
    metrics = train(compose_train(overrides))
    assert 0 <= metrics["test/macro_f1"] <= 1
    assert (tmp_path / "cache" / "images-48x64px.npy").is_file()
    checkpoint = tmp_path / "run" / "checkpoints" / "best.ckpt"
    onnx = OnnxPredictor(export(checkpoint, "onnx", tmp_path / "model.onnx"))
    assert onnx.image_size == (48, 64) and onnx.metadata["image_size"] == [48, 64]
    photos = Photographs(sorted(synthetic_root.rglob("*.jpg"))[:3], onnx.image_size)
    images = np.stack([photos[i]["image"] for i in range(3)])
    assert images.shape == (3, 3, 48, 64)
    np.testing.assert_allclose(onnx(images), load_predictor(checkpoint)(images), atol=1e-6)
    one = sorted(synthetic_root.rglob("*.jpg"))[0]
    predict(str(checkpoint), str(one), tmp_path / "predicted", explain=True)
    assert (tmp_path / "predicted" / "explain" / f"{one.stem}.jpg").stat().st_size > 0
