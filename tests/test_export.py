import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from scalp_ml.data.images import channels_first, letterbox, read_rgb
from scalp_ml.inference.checkpoint import load_checkpoint
from scalp_ml.inference.export import INTENDED_USE, METADATA_FILE, export, exported_outputs
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


def readme_snippet(heading: str) -> str:
    """The first Python block of README's section ``heading``."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index(f"### {heading}\n") :]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def corn_checkpoint(source: Path, path: Path) -> Path:
    """``source`` turned into a CORN-head checkpoint with decision offsets (untrained heads)."""
    checkpoint = torch.load(source, weights_only=True)
    checkpoint["hyper_parameters"] |= {"head": "corn", "loss": "corn"}
    state = checkpoint["state_dict"]
    for key in [key for key in state if key.startswith("net.heads.")]:
        state[key] = state[key][:3]  # three CORN logits per indicator
    state["decision_offsets"] = torch.linspace(-0.5, 0.5, 24).view(6, 4)
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("head", ["softmax", "corn"])
def test_safetensors_export_predicts_alike_with_timm_alone(
    best_checkpoint: Path, synthetic_root: Path, tmp_path: Path, head: str
) -> None:
    checkpoint = best_checkpoint
    if head == "corn":
        checkpoint = corn_checkpoint(best_checkpoint, tmp_path / "corn.ckpt")
    weights = export(checkpoint, "safetensors", tmp_path / "portable" / "model.safetensors")
    paths = sorted(synthetic_root.rglob("*.jpg"))[:4]
    photos = [read_rgb(path) for path in paths]
    np.savez(tmp_path / "photos.npz", *photos)
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "scalp_ml.py").write_text("raise ImportError('scalp_ml is not installed here')\n")
    script = tmp_path / "rebuild.py"
    script.write_text(
        readme_snippet("Portable weights")
        + textwrap.dedent(
            """
            import sys
            try:
                import scalp_ml
            except ImportError:
                pass
            else:
                raise SystemExit(f"scalp_ml was imported from {scalp_ml.__file__}")
            photos = np.load(sys.argv[2])
            probabilities = load_grader(sys.argv[1])([photos[key] for key in photos.files])
            np.save(sys.argv[3], probabilities.numpy())
            """
        )
    )
    arguments = [str(weights.parent), str(tmp_path / "photos.npz"), str(tmp_path / "out.npy")]
    result = subprocess.run(
        [sys.executable, str(script), *arguments],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(blocker)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = load_checkpoint(checkpoint)
    images = torch.from_numpy(np.stack([channels_first(letterbox(p, 64, 64)) for p in photos]))
    with torch.inference_mode():
        expected = loaded.model.deployable()(images).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)
    config = json.loads((weights.parent / "config.json").read_text())
    assert (
        config["head"]["type"] == head and config["architecture"] == loaded.model.hparams.backbone
    )
    assert config["image_size"] == [64, 64] and config["intended_use"] == INTENDED_USE
    assert config["resize"].startswith("letterbox") and len(config["mean"]) == 3
    assert config["grades"] == ["good", "mild", "moderate", "severe"]


def test_safetensors_refuses_what_weights_alone_cannot_carry(best_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="test-time augmentation"):
        export(best_checkpoint, "safetensors", tta="hflip")
    with pytest.raises(ValueError, match="one network's weights"):
        export([best_checkpoint, best_checkpoint], "safetensors")
