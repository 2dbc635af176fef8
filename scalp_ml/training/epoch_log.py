"""One log line per training epoch, and progress lines while grading: logs fit for clusters.

A progress bar outside a terminal (a SLURM log) prints nothing useful; these lines go to the log
(and Hydra's ``<run_dir>/<command>.log``) in a terminal or not.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L

from scalp_ml.progress import EVERY_SECONDS, in_terminal

log = logging.getLogger(__name__)


class EpochLog(L.Callback):
    """Logs each epoch's training loss, monitored metric, time and training images/s.

    Outside a terminal it also logs a progress line every
    :data:`~scalp_ml.progress.EVERY_SECONDS` while grading (Lightning's predict loop).

    Args:
        monitor: The validation metric to show, e.g. ``val/macro_f1``.
    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self._epoch_start = self._last_line = 0.0
        self._images = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Starts the epoch's clock and image count."""
        self._epoch_start = time.monotonic()
        self._images = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, *_: Any
    ) -> None:
        """Counts the batch's images."""
        self._images += len(batch["grades"])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The epoch's line (rank 0 only)."""
        if not trainer.is_global_zero:
            return
        seconds = time.monotonic() - self._epoch_start
        metrics = trainer.callback_metrics
        parts = [f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        if "train/loss" in metrics:
            parts.append(f"train loss {float(metrics['train/loss']):.4f}")
        if self.monitor in metrics:
            parts.append(f"{self.monitor} {float(metrics[self.monitor]):.4f}")
        parts.append(f"{seconds:.1f} s, {self._images / max(seconds, 1e-9):.0f} images/s")
        log.info(", ".join(parts))

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Starts the grading clock."""
        self._last_line = time.monotonic()

    def on_predict_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Outside a terminal: where grading is, every few tens of seconds."""
        now = time.monotonic()
        if in_terminal() or now - self._last_line < EVERY_SECONDS or not trainer.is_global_zero:
            return
        self._last_line = now
        total = trainer.num_predict_batches[dataloader_idx]
        log.info("Grading: batch %d/%d", batch_idx + 1, total)
