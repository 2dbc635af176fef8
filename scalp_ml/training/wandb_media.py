"""W&B extras beyond scalar metrics: confusion matrices, the results table, the best checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import lightning as L
import matplotlib.pyplot as plt
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger

from scalp_ml.evaluation.evidence import Evidence
from scalp_ml.evaluation.report import confusion_figure
from scalp_ml.labels import INDICATOR_NAMES

# Per-indicator columns of the results table (the overall row uses the same names).
TABLE_KEYS = ("macro_f1", "qwk", "mae", "within_one")


def _wandb_loggers(trainer: L.Trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


def log_results(
    trainer: L.Trainer, results: Mapping[str, Mapping[str, torch.Tensor]], evidence: Evidence
) -> None:
    """Puts each split's final metrics in the W&B run summary and its table (``<split>/report``).

    The summary holds every scalar (``test/macro_f1``, ...) once, not as another point of the
    per-epoch curves, the interval bounds (``test/macro_f1_ci_low``, ``..._ci_high``), the
    number of collapsed heads (``test/collapsed_heads``) and their names, comma-separated
    (``test/collapsed_indicators``). Does nothing when the trainer has no W&B logger.
    """
    loggers = _wandb_loggers(trainer)
    if not loggers:
        return
    summary: dict[str, float | int | str] = {
        f"{split}/{key}": float(value)
        for split, values in results.items()
        for key, value in values.items()
        if value.ndim == 0
    }
    for split, intervals in evidence.intervals.items():
        for key, interval in intervals.items():
            summary[f"{split}/{key}_ci_low"] = interval.low
            summary[f"{split}/{key}_ci_high"] = interval.high
    for split, collapsed in evidence.collapsed.items():
        summary[f"{split}/collapsed_heads"] = len(collapsed)
        summary[f"{split}/collapsed_indicators"] = ", ".join(collapsed)
    for logger in loggers:
        logger.experiment.summary.update(summary)
    for split, values in results.items():
        rows = [
            [name, *(float(values[f"{key}/{name}"]) for key in TABLE_KEYS)]
            for name in INDICATOR_NAMES
        ]
        rows.append(["overall", *(float(values[key]) for key in TABLE_KEYS)])
        for logger in loggers:
            logger.log_table(f"{split}/report", columns=["indicator", *TABLE_KEYS], data=rows)


class WandbMedia(L.Callback):
    """Logs to every ``WandbLogger`` of the run; does nothing without one.

    Each validation epoch: the six confusion matrices as one image (``val/confusion``). After
    fitting, optionally: the best checkpoint as a ``model`` artifact (aliases ``best``,
    ``latest``); offline runs keep it for ``wandb sync``. Checkpoints themselves stay in the run
    directory.

    Args:
        log_best_checkpoint: Upload the best checkpoint as an artifact.
    """

    def __init__(self, log_best_checkpoint: bool = False) -> None:
        self.log_best_checkpoint = log_best_checkpoint

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Logs the validation confusion matrices of this epoch (before the module resets them)."""
        loggers = _wandb_loggers(trainer)
        if trainer.sanity_checking or not loggers:
            return
        results = pl_module.val_metrics.compute()  # synchronised; cached for the module's logging
        if not trainer.is_global_zero:
            return
        figure = confusion_figure(results, f"validation, epoch {trainer.current_epoch}")
        figure.canvas.draw()
        image = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
        plt.close(figure)
        for logger in loggers:
            logger.log_image("val/confusion", [image], step=trainer.global_step)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Uploads the best checkpoint as an artifact (when asked and one exists)."""
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        loggers = _wandb_loggers(trainer)
        if not (self.log_best_checkpoint and best and loggers and trainer.is_global_zero):
            return
        import wandb

        for logger in loggers:
            artifact = wandb.Artifact(f"model-{logger.experiment.id}", type="model")
            artifact.add_file(best, name=Path(best).name)
            logger.experiment.log_artifact(artifact, aliases=["best", "latest"])
