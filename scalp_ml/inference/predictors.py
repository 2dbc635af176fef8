"""Grade probabilities from a checkpoint (PyTorch) or its ONNX export, behind one interface.

A predictor takes letterboxed uint8 images ``[B, 3, H, W]`` as NumPy arrays (what
:mod:`scalp_ml.data.dataset` prepares) and returns probabilities ``[B, 6, 4]``. Importing this
module, and predicting with an ONNX file, needs neither torch nor Lightning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from scalp_ml.data.images import input_size

ONNX_METADATA_KEY = "scalp_ml"


class Predictor(Protocol):
    """Anything that grades uint8 image batches; ``data`` holds its training data settings."""

    image_size: tuple[int, int]
    data: dict[str, Any]
    graded_images: dict[str, str]  # split -> hash of the image names it was trained/graded on

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Probabilities ``[B, 6, 4]`` of uint8 letterboxed images ``[B, 3, H, W]``."""
        ...


class CheckpointPredictor:
    """Eager PyTorch inference of a training checkpoint, on CPU or GPU.

    Attributes:
        module: The checkpoint's :class:`~scalp_ml.module.ScalpGrader` (eval mode).
    """

    def __init__(self, path: str | Path, device: str = "auto", tta: str | None = None) -> None:
        import torch

        from scalp_ml.inference.checkpoint import load_checkpoint

        self.device = torch.device(resolve_device(device))
        loaded = load_checkpoint(path, map_location=self.device, tta=tta)
        self.module = loaded.model.to(self.device).eval()
        self.data = loaded.data
        self.graded_images = loaded.graded_images
        self.image_size = input_size(loaded.data["image_size"])
        self.deployed = self.module.deployable().eval()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Probabilities ``[B, 6, 4]``."""
        import torch

        with torch.inference_mode():
            return self.deployed(torch.from_numpy(images).to(self.device)).cpu().numpy()


def resolve_device(device: str) -> str:
    """``cpu`` or ``cuda`` for a command's ``device`` (``auto``: CUDA when torch sees a GPU).

    Raises:
        ValueError: ``cuda`` asked for on a machine where torch sees no GPU.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device=cuda: torch sees no CUDA GPU on this machine (a CPU-only torch build, no "
            "driver, or CUDA_VISIBLE_DEVICES empty); use device=cpu or device=auto"
        )
    return device


class OnnxPredictor:
    """ONNX Runtime inference of a file written by ``scalp_ml.export``.

    Attributes:
        metadata: What the export recorded: input size, label names, data settings, source.
    """

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # ONNX Runtime raises its own untyped failures
            raise ValueError(f"{path} is not a readable ONNX file: {error}") from error
        metadata = self.session.get_modelmeta().custom_metadata_map
        if ONNX_METADATA_KEY not in metadata:
            raise ValueError(f"{path} is not an ONNX file written by scalp_ml.export")
        self.metadata = json.loads(metadata[ONNX_METADATA_KEY])
        self.data = self.metadata["data"]
        self.graded_images = self.metadata.get("images_sha256", {})
        self.image_size = input_size(self.metadata["image_size"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Probabilities ``[B, 6, 4]``."""
        return self.session.run(None, {self.input_name: images})[0]


def load_predictor(path: str | Path, device: str = "auto", tta: str | None = None) -> Predictor:
    """ONNX Runtime for ``.onnx`` files, eager PyTorch for checkpoints.

    Args:
        path: The checkpoint or ONNX file.
        device: ``auto``, ``cpu`` or ``cuda`` (checkpoints).
        tta: Test-time augmentation replacing the checkpoint's; ``None``: as trained. An ONNX
            file has its own inside (chosen at export).

    Raises:
        FileNotFoundError: ``path`` names no file.
        ValueError: ``tta`` asked of an ONNX file.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"ckpt_path={path}: no such file")
    if Path(path).suffix.lower() == ".onnx":
        if tta is not None:
            raise ValueError(
                f"tta={tta}: {path} has its test-time augmentation inside (set at export: "
                "python -m scalp_ml.export ... tta=...); leave tta unset for ONNX files"
            )
        return OnnxPredictor(path)
    return CheckpointPredictor(path, device, tta)
