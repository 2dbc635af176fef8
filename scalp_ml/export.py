"""Export entry: ``python -m scalp_ml.export ckpt_path=... format=onnx|torchscript``.

Writes one self-describing file that maps normalised, letterboxed RGB images ``[B, 3, S, S]``
(any batch size) to grade probabilities ``[B, 6, 4]``; input size, normalisation and the
indicator and grade names travel in its metadata. The export is checked against the
checkpoint on random images before it is written.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from scalp_ml.atomic import atomic_write_bytes
from scalp_ml.inference.checkpoint import load_checkpoint
from scalp_ml.inference.predictors import OnnxPredictor, Preprocessing, Probabilities
from scalp_ml.labels import GRADES, GRADES_KOREAN, INDICATORS

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # largest allowed probability difference between export and checkpoint
METADATA_FILE = "scalp_ml.json"  # TorchScript extra file holding the metadata


def export_metadata(preprocessing: Preprocessing, checkpoint: Path) -> dict[str, Any]:
    """What a consumer of the exported file needs to prepare inputs and read outputs."""
    return {
        "image_size": preprocessing.image_size,
        "mean": list(preprocessing.mean),
        "std": list(preprocessing.std),
        "input": "RGB, letterboxed to image_size (aspect kept, black padding), "
        "scaled to [0, 1], normalised with mean/std, NCHW float32",
        "output": "probabilities [batch, indicator, grade]",
        "indicators": [{"name": i.name, "korean": i.korean, "key": i.key} for i in INDICATORS],
        "grades": list(GRADES),
        "grades_korean": list(GRADES_KOREAN),
        "checkpoint": checkpoint.name,
    }


def onnx_bytes(model: torch.nn.Module, example: torch.Tensor, metadata: dict[str, Any]) -> bytes:
    """ONNX (dynamo exporter) with a dynamic batch axis, weights inside, metadata attached."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        model,
        (example,),
        dynamic_shapes={"images": {0: batch}},
        input_names=["images"],
        output_names=["probabilities"],
        external_data=False,
        verbose=False,
    )
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = "scalp_ml", json.dumps(metadata, ensure_ascii=False)
    return proto.SerializeToString()


def torchscript_bytes(
    model: torch.nn.Module, example: torch.Tensor, metadata: dict[str, Any]
) -> bytes:
    """Traced TorchScript, metadata as an extra file (TorchScript is deprecated upstream)."""
    traced = torch.jit.trace(model, example)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={METADATA_FILE: json.dumps(metadata)})
    return buffer.getvalue()


def exported_outputs(path: Path, images: torch.Tensor) -> np.ndarray:
    """Runs an exported file (ONNX Runtime or TorchScript) on ``images``."""
    if path.suffix == ".onnx":
        return OnnxPredictor(path)(images)
    with torch.inference_mode():
        return torch.jit.load(str(path), map_location="cpu")(images).numpy()


def export(ckpt_path: str | Path, format: str = "onnx", out: str | Path | None = None) -> Path:
    """Exports a checkpoint and checks the file reproduces its probabilities.

    Args:
        ckpt_path: Training checkpoint.
        format: ``onnx`` or ``torchscript``.
        out: Output file; default: beside the checkpoint, ``.onnx`` or ``.pt``.

    Returns:
        The written file.

    Raises:
        ValueError: Unknown format, or the export disagrees with the checkpoint.
    """
    writers = {"onnx": (onnx_bytes, ".onnx"), "torchscript": (torchscript_bytes, ".pt")}
    if format not in writers:
        raise ValueError(f"format={format!r}: choose one of {sorted(writers)}")
    write, suffix = writers[format]
    checkpoint = Path(ckpt_path)
    loaded = load_checkpoint(checkpoint)
    model = Probabilities(loaded.model.net).eval()
    preprocessing = Preprocessing.from_data(loaded.data)
    size = preprocessing.image_size
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    data = write(model, example, export_metadata(preprocessing, checkpoint))
    path = Path(out) if out else checkpoint.with_suffix(suffix)
    staged = atomic_write_bytes(path.with_name(f".{path.name}.check{suffix}"), data)
    try:
        images = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            expected = model(images).numpy()
        difference = float(np.abs(exported_outputs(staged, images) - expected).max())
        if difference > TOLERANCE:
            raise ValueError(f"{format} export differs from {checkpoint} by {difference:.2e}")
        staged.replace(path)
    finally:
        staged.unlink(missing_ok=True)
    log.info("Wrote %s (max probability difference to the checkpoint %.1e)", path, difference)
    return path


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    """Hydra entry."""
    export(cfg.ckpt_path, cfg.format, cfg.out)


if __name__ == "__main__":
    main()
