"""Export a checkpoint to one self-describing file: ONNX (or TorchScript, deprecated upstream).

``format=safetensors`` writes the network's weights and a ``config.json`` instead, which plain
timm, torch and safetensors load without this package (:mod:`scalp_ml.inference.portable`).

The file maps letterboxed uint8 RGB images ``[B, 3, H, W]`` (any batch size) to grade
probabilities ``[B, 6, 4]``: normalisation is inside, so a consumer only decodes and letterboxes
(:func:`scalp_ml.data.images.letterbox`). The input size, label names and the data settings of
training travel in its metadata. The export is checked against the checkpoint before it is
written.

An ensemble (``ckpt_path=[a.ckpt,b.ckpt,...]`` or a folder of runs, e.g. the folds of a
cross-validation) is written as one file: every member inside, their mean probabilities out,
one preprocessing; its metadata names the members.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

import scalp_ml
from scalp_ml.atomic import atomic_write_bytes
from scalp_ml.data.images import RESIZE, input_size
from scalp_ml.extras import require
from scalp_ml.inference.checkpoint import LoadedCheckpoint, load_checkpoint
from scalp_ml.inference.ensemble import MeanOfMembers, load_members, member_paths
from scalp_ml.inference.portable import (
    WEIGHTS_FILE,
    portable_probabilities,
    safetensors_bytes,
    write_config,
)
from scalp_ml.inference.predictors import ONNX_METADATA_KEY, OnnxPredictor
from scalp_ml.labels import GRADES, GRADES_KOREAN, INDICATORS
from scalp_ml.training.quiet import ONNX_OPTIMISER_LOGGERS, quiet_loggers
from scalp_ml.training.run_record import git_state

log = logging.getLogger(__name__)

TOLERANCE = 1e-5  # largest allowed probability difference between export and checkpoint
METADATA_FILE = "scalp_ml.json"  # TorchScript extra file holding the metadata
FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}
INTENDED_USE = "research; not a medical diagnosis"


def export_metadata(loaded: LoadedCheckpoint) -> dict[str, Any]:
    """What a consumer of the exported file needs to prepare inputs and read outputs."""
    return {
        "image_size": list(input_size(loaded.data["image_size"])),
        "input": "RGB uint8 [batch, 3, height, width], letterboxed to image_size (aspect kept, "
        "area-averaged, black padding centred); normalisation is inside the model",
        "output": "probabilities [batch, indicator, grade]",
        "indicators": [{"name": i.name, "korean": i.korean, "key": i.key} for i in INDICATORS],
        "grades": list(GRADES),
        "grades_korean": list(GRADES_KOREAN),
        "checkpoint": loaded.path.name,
        "model": dict(loaded.model.hparams),
        "decision_offsets": loaded.model.decision_offsets.tolist(),
        "data": loaded.data,
        "images_sha256": loaded.graded_images,
        "mean": (loaded.model.net.mean.flatten() / 255).tolist(),  # applied inside, on [0, 1]
        "std": (loaded.model.net.std.flatten() / 255).tolist(),
        "scalp_ml_version": scalp_ml.__version__,
        "git_commit": git_state(Path(scalp_ml.__file__).parent)["commit"],
        "exported": datetime.now(UTC).isoformat(timespec="seconds"),
        "intended_use": INTENDED_USE,
    }


def flat_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    """The metadata as flat text keys, for ONNX tools that show ``metadata_props`` as a list."""
    height, width = metadata["image_size"]
    return {
        "version": metadata["scalp_ml_version"],
        "git_commit": metadata["git_commit"] or "unknown",
        "date": metadata["exported"],
        "image_size": f"{height}x{width}",
        "resize": RESIZE,
        "input": metadata["input"],
        "output": metadata["output"],
        "mean": ",".join(f"{value:.6g}" for value in metadata["mean"]),
        "std": ",".join(f"{value:.6g}" for value in metadata["std"]),
        "indicators": ",".join(item["name"] for item in metadata["indicators"]),
        "grades": ",".join(metadata["grades"]),
        "intended_use": metadata["intended_use"],
    }


def ensemble_metadata(members: Sequence[LoadedCheckpoint]) -> dict[str, Any]:
    """The first member's metadata, with every member's checkpoint, model and offsets."""
    metadata = export_metadata(members[0])
    for key in ("checkpoint", "model", "decision_offsets"):
        del metadata[key]
    metadata["output"] = "mean of the members' probabilities [batch, indicator, grade]"
    metadata["members"] = [
        {
            "checkpoint": str(member.path),
            "model": dict(member.model.hparams),
            "decision_offsets": member.model.decision_offsets.tolist(),
            "fold": member.data["split"].get("fold"),
        }
        for member in members
    ]
    return metadata


def onnx_bytes(model: torch.nn.Module, example: torch.Tensor, metadata: dict[str, Any]) -> bytes:
    """ONNX (dynamo exporter) with a dynamic batch axis, weights inside, metadata attached."""
    require("onnxscript", "export", "format=onnx (torch's ONNX exporter)")
    batch = torch.export.Dim("batch", min=1, max=4096)
    with quiet_loggers(*ONNX_OPTIMISER_LOGGERS):  # a dozen INFO lines per export otherwise
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
    flat = flat_metadata(metadata) if metadata else {}
    for key, value in {ONNX_METADATA_KEY: json.dumps(metadata, ensure_ascii=False), **flat}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
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
    """Runs an exported file (ONNX Runtime, safetensors or TorchScript) on uint8 ``images``."""
    if path.suffix.lower() == ".onnx":
        return OnnxPredictor(path)(images.numpy())
    if path.suffix.lower() == ".safetensors":
        return portable_probabilities(path, images)
    with torch.inference_mode():
        return torch.jit.load(str(path), map_location="cpu")(images).numpy()


def random_images(count: int, image_size: tuple[int, int], seed: int) -> torch.Tensor:
    """Seeded random uint8 images ``[count, 3, H, W]``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, *image_size), dtype=torch.uint8, generator=generator)


WRITERS = {"onnx": onnx_bytes, "torchscript": torchscript_bytes, "safetensors": safetensors_bytes}


def export(
    ckpt_path: str | Path | Sequence[str | Path],
    format: str = "onnx",
    out: str | Path | None = None,
    tta: str | None = None,
) -> Path:
    """Exports a checkpoint (or an ensemble) and checks the file reproduces its probabilities.

    Args:
        ckpt_path: Training checkpoint; an ensemble: a list of them or a folder of runs.
        format: ``onnx``, ``torchscript`` or ``safetensors`` (one checkpoint, no test-time
            augmentation; ``config.json`` is written beside the weights).
        out: Output file; default: beside the checkpoint, ``.onnx`` or ``.pt`` (an ensemble:
            ``ensemble.onnx`` in the members' common folder, e.g. the sweep directory);
            safetensors: ``<checkpoint name>/model.safetensors``.
        tta: Test-time augmentation inside the file (of every member); ``None``: as trained.

    Returns:
        The written file.

    Raises:
        ValueError: Unknown format, the export disagrees with the checkpoint, the
            ensemble's members differ in input or labels, or safetensors of an ensemble or
            with test-time augmentation.
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r}: choose one of {sorted(FORMATS)}")
    paths = member_paths(ckpt_path)
    model, loaded, metadata, default = exported_model(paths, format, tta)
    path = Path(out) if out else default
    source = str(paths[0]) if len(paths) == 1 else f"the {len(paths)} members"
    image_size = input_size(loaded.data["image_size"])
    difference = write_checked(model, metadata, image_size, format, path, source)
    if format == "safetensors":
        write_config(path)
    log.info("Wrote %s (max probability difference to the checkpoint %.1e)", path, difference)
    return path


def exported_model(
    paths: Sequence[Path], format: str, tta: str | None
) -> tuple[torch.nn.Module, LoadedCheckpoint, dict[str, Any], Path]:
    """The model to export, its (first) checkpoint, its metadata and its default file.

    Raises:
        ValueError: The ensemble's members differ in input or labels, or safetensors of an
            ensemble.
    """
    suffix = FORMATS[format]
    if len(paths) == 1:
        loaded = load_checkpoint(paths[0], tta=tta)
        default = paths[0].with_suffix(suffix)
        if format == "safetensors":  # one folder per export, as timm's: config.json beside
            default = paths[0].with_suffix("") / WEIGHTS_FILE
        return loaded.model.deployable().eval(), loaded, export_metadata(loaded), default
    if format == "safetensors":
        raise ValueError(
            "format=safetensors holds one network's weights: export each member, or the "
            "ensemble as one ONNX file (format=onnx)"
        )
    members = load_members(paths, tta=tta)
    model = MeanOfMembers([member.model.deployable() for member in members]).eval()
    default = Path(os.path.commonpath(paths)) / f"ensemble{suffix}"
    return model, members[0], ensemble_metadata(members), default


def write_checked(
    model: torch.nn.Module,
    metadata: dict[str, Any],
    image_size: tuple[int, int],
    format: str,
    path: Path,
    source: str,
) -> float:
    """Writes ``model`` as ``format`` to ``path`` once the file reproduces its probabilities.

    Returns:
        The largest probability difference between the file and ``model``.

    Raises:
        ValueError: The file differs from ``model`` (from ``source``) by more than
            ``TOLERANCE``; nothing is written.
    """
    suffix = FORMATS[format]
    data = WRITERS[format](model, random_images(2, image_size, 0), metadata)
    staged = atomic_write_bytes(path.with_name(f".{path.name}.check{suffix}"), data)
    try:
        images = random_images(3, image_size, 1)
        with torch.inference_mode():
            expected = model(images).numpy()
        difference = float(np.abs(exported_outputs(staged, images) - expected).max())
        if difference > TOLERANCE:
            raise ValueError(f"{format} export differs from {source} by {difference:.2e}")
        staged.replace(path)
    finally:
        staged.unlink(missing_ok=True)
    return difference
