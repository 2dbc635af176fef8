"""Load a training checkpoint safely (``weights_only``) into a ready-to-use model."""

from __future__ import annotations

import io
import pickle
import re
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
    model = build_model(Path(path), hparams, checkpoint["state_dict"])
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
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(
            f"{path} is an ONNX export, not a training checkpoint; the commands that take "
            "it (evaluate, predict) read it with ONNX Runtime"
        )
    checkpoint = load_torch_file(path, map_location)
    missing = [
        key for key in REQUIRED_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint
    ]
    if missing:
        raise CheckpointError(f"{path} is not a scalp_ml training checkpoint: it lacks {missing}")
    migrate(checkpoint, str(path))
    return checkpoint


def load_torch_file(path: str | Path, map_location: Any = "cpu") -> Any:
    """A file written by ``torch.save``, unpickling only tensors and plain values.

    torch's own messages advise ``weights_only=False`` (or allow-listing the file's globals):
    never an option for a file of unknown origin, and a scalp_ml checkpoint needs neither.
    These messages name the file and say what it is instead.

    Raises:
        FileNotFoundError: ``path`` names no file.
        CheckpointError: The file refers to code or objects (refused without running any of
            it), or is not a PyTorch file at all, or is corrupt or truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        code = re.search(r"GLOBAL (\S+)", str(error))
        if code is None:
            raise CheckpointError(not_a_checkpoint(path, error)) from error
        raise CheckpointError(
            f"{path} is not a checkpoint that can be loaded safely: it refers to code or "
            f"objects ({code.group(1)}), which no scalp_ml checkpoint holds. It was refused "
            "without running any of its code; use a checkpoint written by scalp_ml.train."
        ) from error
    except OSError as error:
        raise CheckpointError(f"{path} cannot be read: {error.strerror or error}") from error
    except Exception as error:  # other bytes break the unpickler or zip reader in many ways
        raise CheckpointError(not_a_checkpoint(path, error)) from error


def not_a_checkpoint(path: Path, error: BaseException) -> str:
    """Why ``torch.load`` cannot parse a file: torch's reason, never its advice."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reasons = [line for line in lines if "weights_only" not in line]
    reason = f"{type(error).__name__}: {reasons[0]}" if reasons else type(error).__name__
    return (
        f"{path} is not a PyTorch checkpoint, or it is corrupt or truncated ({reason}); "
        "nothing in it was run. Use a checkpoint written by scalp_ml.train, e.g. "
        "<run>/checkpoints/last.ckpt or best.ckpt, copied whole."
    )


def build_model(path: Path, hparams: dict[str, Any], weights: dict[str, Any]) -> ScalpGrader:
    """The model a checkpoint's hyper-parameters describe, holding its weights.

    Raises:
        CheckpointError: The hyper-parameters build no model, or the weights do not fit it (a
            forged or spliced file): the message names the first weight that differs.
    """
    try:
        model = ScalpGrader(**hparams)
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{path}: its recorded model settings (hyper_parameters) build no model: {error}"
        ) from error
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise CheckpointError(
            f"{path}: its weights do not match its recorded model settings "
            f"(backbone={hparams.get('backbone')}, head={hparams.get('head')}); "
            f"{first_mismatch(model.state_dict(), weights)}. The file was altered or mixes "
            "two checkpoints; use one written by scalp_ml.train as it was saved."
        ) from error
    return model


def first_mismatch(expected: dict[str, torch.Tensor], found: dict[str, Any]) -> str:
    """The first weight of a model that a state dict lacks or holds in another shape."""
    for key, tensor in expected.items():
        value = found.get(key)
        if not isinstance(value, torch.Tensor):
            return f"first mismatch: {key} is {'missing' if value is None else 'not a tensor'}"
        if value.shape != tensor.shape:
            return (
                f"first mismatch: {key} has shape {list(value.shape)} in the file, "
                f"{list(tensor.shape)} for those settings"
            )
    unexpected = [key for key in found if key not in expected]
    if unexpected:
        return f"first mismatch: {unexpected[0]} is not part of that model"
    return "a weight could not be copied into that model"


def write_with_offsets(source: str | Path, target: Path, offsets: torch.Tensor) -> Path:
    """Writes ``source`` again as ``target`` (atomically) with these decision offsets."""
    checkpoint = read_checkpoint(source)
    checkpoint["state_dict"]["decision_offsets"] = offsets.detach().cpu().float()
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return atomic_write_bytes(target, buffer.getvalue())
