"""Load a training checkpoint safely (``weights_only``) into a ready-to-use model."""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scalp_ml.atomic import atomic_write_bytes
from scalp_ml.models.migration import migrate
from scalp_ml.module import ScalpGrader

REQUIRED_KEYS = ("state_dict", "hyper_parameters", "datamodule_hyper_parameters")


class CheckpointError(ValueError):
    """A file that is not a scalp_ml checkpoint, or one that cannot be loaded safely."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint's model (in eval mode) and the data settings it was trained with."""

    path: Path
    model: ScalpGrader
    data: dict[str, Any]
    graded_images: dict[str, str]  # split -> hash of its image names (empty: not recorded)


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", tta: str | None = None
) -> LoadedCheckpoint:
    """Rebuilds the model from a checkpoint alone, without downloading any weights.

    ``tta`` replaces the checkpoint's test-time augmentation (``None``: keep it).

    Raises:
        FileNotFoundError: ``path`` names no file.
        CheckpointError: The file is not a loadable scalp_ml checkpoint (the message names it).
    """
    checkpoint = read_checkpoint(path, map_location)
    hparams = checkpoint["hyper_parameters"] | ({"tta": tta} if tta else {})
    model = ScalpGrader(**hparams)
    model.load_state_dict(checkpoint["state_dict"])
    data = dict(checkpoint["datamodule_hyper_parameters"])
    graded = checkpoint.get("ScalpDataModule", {}).get("images_sha256", {})
    return LoadedCheckpoint(Path(path), model.eval(), data, dict(graded))


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A scalp_ml checkpoint's contents, upgraded to today's layout.

    Only tensors and plain containers are unpickled (``torch.load(weights_only=True)``), so a
    tampered file cannot run code. Checkpoints of earlier scalp_ml versions are upgraded
    (:mod:`scalp_ml.models.migration`). Its ``state_dict`` holds the weights a model is
    graded with (with weight averaging: the averaged ones).

    Raises:
        FileNotFoundError: ``path`` names no file.
        CheckpointError: The file is not a loadable scalp_ml checkpoint (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path}: no such file")
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(
            f"{path} is an ONNX export, not a training checkpoint; the commands that take "
            "it (evaluate, predict) read it with ONNX Runtime"
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message suggests weights_only=False: never an option for a file of unknown
        # origin, and a scalp_ml checkpoint never needs it. Only the unpickler's reason is kept.
        reasons = [line.strip() for line in str(error).splitlines() if "nsupported" in line]
        raise CheckpointError(
            f"{path} is not a checkpoint that can be loaded safely: it holds more than tensors "
            f"and plain values ({reasons[0] if reasons else 'unreadable pickle'}). It was "
            "refused without running any of its code."
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint: {reason}") from error
    missing = [
        key for key in REQUIRED_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint
    ]
    if missing:
        raise CheckpointError(f"{path} is not a scalp_ml training checkpoint: it lacks {missing}")
    migrate(checkpoint, str(path))
    return checkpoint


def write_with_offsets(source: str | Path, target: Path, offsets: torch.Tensor) -> Path:
    """Writes ``source`` again as ``target`` (atomically) with these decision offsets."""
    checkpoint = read_checkpoint(source)
    checkpoint["state_dict"]["decision_offsets"] = offsets.detach().cpu().float()
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return atomic_write_bytes(target, buffer.getvalue())
