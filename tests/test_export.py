import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scalp_ml.data.images import channels_first, letterbox, read_rgb
from scalp_ml.inference.checkpoint import load_checkpoint
from scalp_ml.inference.export import METADATA_FILE, export, exported_outputs
from scalp_ml.inference.predictors import OnnxPredictor


def real_images(synthetic_root: Path, count: int, size: int = 64) -> torch.Tensor:
    paths = sorted(synthetic_root.rglob("*.jpg"))[:count]
    images = [channels_first(letterbox(read_rgb(path), size, size)) for path in paths]
    return torch.from_numpy(np.stack(images))


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_matches_the_checkpoint_on_real_images_for_any_batch(
    onnx_file: Path, best_checkpoint: Path, synthetic_root: Path, batch: int
) -> None:
    loaded = load_checkpoint(best_checkpoint)
    images = real_images(synthetic_root, batch)
    with torch.inference_mode():
        expected = loaded.model.deployable()(images).numpy()
    np.testing.assert_allclose(OnnxPredictor(onnx_file)(images.numpy()), expected, atol=1e-6)


def test_onnx_file_describes_itself(onnx_file: Path, best_checkpoint: Path) -> None:
    predictor = OnnxPredictor(onnx_file)
    metadata = predictor.metadata
    assert metadata["image_size"] == [64, 64] and "uint8" in metadata["input"]
    assert metadata["indicators"][0]["korean"] == "미세각질"
    assert metadata["grades"] == ["good", "mild", "moderate", "severe"]
    assert predictor.data == load_checkpoint(best_checkpoint).data  # evaluate finds the split
    assert predictor.session.get_inputs()[0].type == "tensor(uint8)"


def test_onnx_metadata_has_flat_keys_any_onnx_tool_shows(onnx_file: Path) -> None:
    import onnx

    import scalp_ml

    flat = {entry.key: entry.value for entry in onnx.load(onnx_file).metadata_props}
    assert flat["version"] == scalp_ml.__version__ and flat["image_size"] == "64x64"
    assert flat["intended_use"] == "research; not a medical diagnosis"
    assert (
        flat["indicators"].split(",")[0] == "microkeratin" and len(flat["grades"].split(",")) == 4
    )
    mean = [float(value) for value in flat["mean"].split(",")]
    assert mean == pytest.approx([0.485, 0.456, 0.406], abs=1e-6)  # timm's ImageNet mean
    assert flat["date"].startswith("20")
    assert len(flat["git_commit"]) == 40 or flat["git_commit"] == "unknown"  # not a git checkout


def test_torchscript_export_matches_and_carries_metadata(
    best_checkpoint: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    path = export(best_checkpoint, "torchscript", tmp_path / "model.pt")
    loaded = load_checkpoint(best_checkpoint)
    images = real_images(synthetic_root, 3)
    with torch.inference_mode():
        expected = loaded.model.deployable()(images).numpy()
    np.testing.assert_allclose(exported_outputs(path, images), expected, atol=1e-6)
    extra = {METADATA_FILE: ""}
    torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra[METADATA_FILE])["image_size"] == [64, 64]


def test_unknown_format_is_refused(best_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="choose one of"):
        export(best_checkpoint, "tflite")
