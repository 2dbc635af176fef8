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
from scalp_ml.extras import require
from scalp_ml.labels import GRADES, INDICATOR_NAMES

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
        ort = require("onnxruntime", "export", f"Running the ONNX file {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # ONNX Runtime raises its own untyped failures
            raise ValueError(f"{path} is not a readable ONNX file: {error}") from error
        self.metadata = read_metadata(path, self.session)
        self.data = self.metadata["data"]
        self.graded_images = self.metadata.get("images_sha256", {})
        self.image_size = input_size(self.metadata["image_size"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Probabilities ``[B, 6, 4]``."""
        return self.session.run(None, {self.input_name: images})[0]


class OnnxMetadataError(ValueError):
    """An ONNX file whose scalp_ml metadata is malformed, incomplete or contradicts its graph."""


def read_metadata(path: str | Path, session: Any) -> dict[str, Any]:
    """The metadata ``scalp_ml.export`` wrote into an ONNX file, checked before it is relied on.

    Args:
        path: The ONNX file (for messages).
        session: Its ``onnxruntime.InferenceSession``, whose input and output shapes the
            metadata must agree with.

    Raises:
        ValueError: The file carries no scalp_ml metadata (not written by ``scalp_ml.export``).
        OnnxMetadataError: A key is missing or wrong (the message names the file and the key).
    """
    stored = session.get_modelmeta().custom_metadata_map
    if ONNX_METADATA_KEY not in stored:
        raise ValueError(f"{path} is not an ONNX file written by scalp_ml.export")
    redo = (
        "; the file was changed after export or not written by scalp_ml.export: export the "
        "checkpoint again (python -m scalp_ml.export ckpt_path=<checkpoint>)"
    )
    try:
        metadata = json.loads(stored[ONNX_METADATA_KEY])
    except json.JSONDecodeError as error:
        raise OnnxMetadataError(
            f"{path}: its '{ONNX_METADATA_KEY}' metadata is not JSON ({error}){redo}"
        ) from error
    if not isinstance(metadata, dict):
        raise OnnxMetadataError(
            f"{path}: its '{ONNX_METADATA_KEY}' metadata is not a JSON object{redo}"
        )
    problem = metadata_problem(
        metadata, session.get_inputs()[0].shape, session.get_outputs()[0].shape
    )
    if problem:
        key, what = problem
        raise OnnxMetadataError(f"{path}: metadata key '{key}' {what}{redo}")
    return metadata


def metadata_problem(
    metadata: dict[str, Any], input_shape: list[Any], output_shape: list[Any]
) -> tuple[str, str] | None:
    """The first metadata key that grading relies on and is missing or wrong, and what is wrong.

    ``input_shape`` (``[batch, 3, H, W]``) and ``output_shape`` (``[batch, 6, 4]``) are the
    graph's; a symbolic dimension is a string.
    """
    height_width = list(input_shape[2:4])
    indicators, grades = [*output_shape[1:3], None, None][:2]
    checks = {
        "data": lambda value: None if isinstance(value, dict) else "is not a JSON object",
        "image_size": lambda value: _image_size_problem(value, height_width),
        "indicators": lambda value: _labels_problem(value, INDICATOR_NAMES, indicators),
        "grades": lambda value: _labels_problem(value, GRADES, grades),
    }
    for key, check in checks.items():
        what = check(metadata[key]) if key in metadata else "is missing"
        if what:
            return key, what
    if not isinstance(metadata.get("images_sha256", {}), dict):
        return "images_sha256", "is not a JSON object (split: hash of its image names)"
    return None


def _image_size_problem(value: Any, graph: list[Any]) -> str | None:
    try:
        size = input_size(value)
    except (TypeError, ValueError):
        return f"is {value!r}, not a side or [height, width] in pixels"
    if len(graph) == 2 and all(isinstance(side, int) for side in graph) and list(size) != graph:
        return f"is {value!r}, but the model takes {graph[0]}x{graph[1]} images"
    return None


def _labels_problem(value: Any, expected: tuple[str, ...], outputs: Any) -> str | None:
    names = (
        [item.get("name") if isinstance(item, dict) else item for item in value]
        if isinstance(value, list)
        else value
    )
    if names == list(expected) and outputs == len(expected):
        return None
    return f"lists {names!r}; the model outputs {outputs} and scalp_ml grades {list(expected)}"


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
