"""Training callbacks for safe interruption: reproducible epochs and a checkpoint on SIGTERM."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import RandomSampler

log = logging.getLogger(__name__)


class EpochSeed(L.Callback):
    """Seeds every training epoch from ``seed + epoch``.

    Shuffling, augmentation and dropout of an epoch then depend on the seed and the epoch
    number only, so a run resumed from ``last.ckpt`` repeats the epochs that the uninterrupted
    run would have trained. The shuffling gets its own generator and albumentations keeps its
    own (global seeds do not reach it), so both are reseeded at the start of the epoch; the
    global generators (dropout) at its first batch, after Lightning created the loader
    iterator, which it does earlier in the first epoch after a resume. (The balanced sampler
    of ``data.sampler=balanced`` needs nothing here: it draws from the run's seed and the epoch
    that Lightning passes to its ``set_epoch``.) With loader processes
    (``data.num_workers > 0``) the augmentation runs in the processes' own copies, and only
    ``num_workers=0`` repeats it exactly.

    Args:
        seed: The run's seed.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Reseeds the shuffling and the training augmentation for this epoch."""
        seed = self.seed + trainer.current_epoch
        loader = trainer.train_dataloader
        if isinstance(getattr(loader, "sampler", None), RandomSampler):
            loader.sampler.generator = torch.Generator().manual_seed(seed)
        augment = getattr(getattr(loader, "dataset", None), "augment", None)
        if augment is not None:
            augment.set_random_seed(seed)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Reseeds torch, NumPy and ``random`` before the epoch's first batch."""
        if batch_idx == 0:
            L.seed_everything(self.seed + trainer.current_epoch, workers=True, verbose=False)


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
