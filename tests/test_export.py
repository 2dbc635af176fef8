import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scalp_ml.data.images import read_rgb
from scalp_ml.data.transforms import build_transform
from scalp_ml.export import METADATA_FILE, export, exported_outputs
from scalp_ml.inference.checkpoint import load_checkpoint
from scalp_ml.inference.predictors import OnnxPredictor, Probabilities


def real_images(synthetic_root: Path, data: dict, count: int) -> torch.Tensor:
    transform = build_transform(data["image_size"], data["mean"], data["std"])
    paths = sorted(synthetic_root.rglob("*.jpg"))[:count]
    return torch.stack([transform(image=read_rgb(path))["image"] for path in paths])


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_matches_the_checkpoint_on_real_images_for_any_batch(
    onnx_file: Path, best_checkpoint: Path, synthetic_root: Path, batch: int
) -> None:
    loaded = load_checkpoint(best_checkpoint)
    images = real_images(synthetic_root, loaded.data, batch)
    with torch.inference_mode():
        expected = Probabilities(loaded.model.net)(images).numpy()
    np.testing.assert_allclose(OnnxPredictor(onnx_file)(images), expected, atol=1e-4)


def test_onnx_file_describes_itself(onnx_file: Path) -> None:
    metadata = OnnxPredictor(onnx_file).metadata
    assert metadata["image_size"] == 64 and len(metadata["mean"]) == 3
    assert metadata["indicators"][0]["korean"] == "미세각질"
    assert metadata["grades"] == ["good", "mild", "moderate", "severe"]


def test_torchscript_export_matches_and_carries_metadata(
    best_checkpoint: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    path = export(best_checkpoint, "torchscript", tmp_path / "model.pt")
    loaded = load_checkpoint(best_checkpoint)
    images = real_images(synthetic_root, loaded.data, 3)
    with torch.inference_mode():
        expected = Probabilities(loaded.model.net)(images).numpy()
    np.testing.assert_allclose(exported_outputs(path, images), expected, atol=1e-4)
    extra = {METADATA_FILE: ""}
    torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra[METADATA_FILE])["image_size"] == 64


def test_unknown_format_is_refused(best_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="choose one of"):
        export(best_checkpoint, "tflite")
