"""Checkpoints written like every other file of a run: beside their final name, then renamed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from scalp_ml.atomic import atomic_write_bytes


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
