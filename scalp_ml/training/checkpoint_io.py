"""Checkpoints written like every other file of a run, and read back like every command does."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from scalp_ml.atomic import atomic_write_bytes
from scalp_ml.inference.checkpoint import load_torch_file


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves a checkpoint to a temporary file in its own folder, fsynced, then renamed.

    Lightning's own atomic save stages the file in the temporary directory and moves it,
    which is a copy across file systems: a full disk then leaves a truncated ``last.ckpt``.
    Here a full disk leaves the previous checkpoint whole and the error names the file and
    the space left (:func:`scalp_ml.atomic.atomic_write_bytes`).
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        """Serialises ``checkpoint`` in memory, then writes it atomically to ``path``."""
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())

    def load_checkpoint(
        self,
        path: str | Path,
        map_location: Callable | str | torch.device | None = "cpu",
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """The checkpoint ``ckpt_path`` resumes from, read like every command reads one.

        Always weights-only, whatever ``weights_only`` says: a tampered, foreign or corrupt
        file stops the run with a message naming it, never torch's advice to load it unsafely
        (:func:`scalp_ml.inference.checkpoint.load_torch_file`).
        """
        return load_torch_file(path, map_location)
