"""Training callbacks for safe interruption: reproducible epochs and a checkpoint on SIGTERM."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class EpochSeed(L.Callback):
    """Seeds every training epoch from ``seed + epoch``, and a resumed one from where it stopped.

    The training order and each image's augmentation come from the sampler, which draws epoch
    e from ``seed + e`` (:mod:`scalp_ml.data.sampler`). What else is random in training
    (dropout, stochastic depth, augmentation on the device) draws from torch's global
    generators: they are reseeded before each epoch's first batch, after Lightning created the
    loader iterator (which it does earlier in the first epoch after a resume). A checkpoint
    also records their state, which an epoch resumed mid-way gets back before its first batch.
    A resumed run thus repeats the uninterrupted one, with or without loader processes.

    Args:
        seed: The run's seed.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._saved_state: dict[str, Any] | None = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Reseeds before the epoch's first batch; restores the state of a stopped epoch."""
        saved, self._saved_state = self._saved_state, None
        if batch_idx == 0:
            L.seed_everything(self.seed + trainer.current_epoch, workers=True, verbose=False)
        elif saved is not None:
            torch.set_rng_state(saved["cpu"])
            if torch.cuda.is_available() and saved["cuda"]:
                torch.cuda.set_rng_state_all(saved["cuda"])

    def state_dict(self) -> dict[str, Any]:
        """Torch's generator states now (what the next batch would draw from)."""
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return {"cpu": torch.get_rng_state(), "cuda": cuda}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keeps the states for the first batch of a resumed epoch."""
        self._saved_state = state_dict


class CheckpointOnSigterm(L.Callback):
    """Writes ``last.ckpt`` when SIGTERM (cluster pre-emption, ``kill``) stops training.

    Lightning turns SIGTERM into a ``SIGTERMException`` at the end of the current batch; this
    callback then saves the trainer state mid-epoch into the checkpoint callback's folder, so
    ``ckpt_path=last`` continues from there.
    """

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """Saves ``last.ckpt`` if the exception is Lightning's SIGTERM signal."""
        checkpointing = trainer.checkpoint_callback
        if not isinstance(exception, SIGTERMException) or not isinstance(
            checkpointing, ModelCheckpoint
        ):
            return
        path = Path(checkpointing.dirpath or trainer.default_root_dir) / "last.ckpt"
        trainer.save_checkpoint(path)
        log.warning(
            "SIGTERM at step %d: saved %s; %s",
            trainer.global_step,
            path,
            resume_hint(trainer.default_root_dir),
        )


def resume_hint(run_dir: str | Path) -> str:
    """How to continue a stopped run from its ``checkpoints/last.ckpt``."""
    return f"resume with ckpt_path=last hydra.run.dir={run_dir} and the run's other overrides"
