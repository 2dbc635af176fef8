"""Grade probabilities from a checkpoint (eager PyTorch) or an exported ONNX file, one interface."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from rich.progress import track
from torch import nn
from torch.utils.data import DataLoader

from scalp_ml.inference.checkpoint import load_checkpoint


@dataclass(frozen=True)
class Preprocessing:
    """How images must be prepared: letterbox side and normalisation."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Preprocessing:
        """From the data settings a checkpoint was trained with."""
        return cls(int(data["image_size"]), tuple(data["mean"]), tuple(data["std"]))


class Probabilities(nn.Module):
    """Wraps a grader so that it returns softmax probabilities ``[B, 6, 4]``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Grade probabilities of normalised images ``[B, 3, H, W]``."""
        return self.model(images).float().softmax(dim=-1)


class Predictor(Protocol):
    """Anything that turns a batch of normalised images into grade probabilities."""

    preprocessing: Preprocessing

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """Probabilities ``[B, 6, 4]`` of a normalised image batch ``[B, 3, H, W]``."""
        ...


class TorchPredictor:
    """Eager PyTorch inference of a checkpoint, on CPU or GPU."""

    def __init__(self, checkpoint: str | Path, device: str = "auto") -> None:
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        )
        loaded = load_checkpoint(checkpoint, map_location=self.device)
        self.net = loaded.model.net.to(self.device).eval()
        self.model = Probabilities(self.net)
        self.preprocessing = Preprocessing.from_data(loaded.data)
        self.data = loaded.data

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """Probabilities ``[B, 6, 4]``."""
        return self.model(images.to(self.device)).cpu().numpy()


class OnnxPredictor:
    """ONNX Runtime inference of a file written by ``scalp_ml.export``."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "scalp_ml" not in metadata:
            raise ValueError(f"{path} is not an ONNX file written by scalp_ml.export")
        self.metadata = json.loads(metadata["scalp_ml"])
        self.preprocessing = Preprocessing.from_data(self.metadata)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """Probabilities ``[B, 6, 4]``."""
        return self.session.run(None, {self.input_name: images.numpy()})[0]


def load_predictor(path: str | Path, device: str = "auto") -> Predictor:
    """An ONNX Runtime predictor for ``.onnx`` files, an eager one for checkpoints."""
    return OnnxPredictor(path) if Path(path).suffix == ".onnx" else TorchPredictor(path, device)


def graded_batches(
    predictor: Predictor, loader: DataLoader
) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """Each batch of ``loader`` with its grade probabilities ``[B, 6, 4]``, with a progress bar."""
    for batch in track(loader, total=len(loader), description="Grading"):
        yield batch, predictor(batch["image"])
