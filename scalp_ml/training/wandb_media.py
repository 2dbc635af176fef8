"""W&B extras beyond scalar metrics: confusion matrices, the final results, the report files."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger

from scalp_ml.evaluation.evidence import Evidence
from scalp_ml.labels import GRADES, INDICATOR_NAMES

if TYPE_CHECKING:
    from wandb import Run

# Per-indicator columns of the results table (the overall row uses the same names).
TABLE_KEYS = ("macro_f1", "qwk", "mae", "within_one")
# The report files of ``evaluate_splits`` copied into the run (besides its ``*.png`` figures).
REPORT_FILES = ("report.md", "metrics.json")


def _wandb_loggers(trainer: L.Trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


def confusion_charts(
    results: Mapping[str, torch.Tensor], prefix: str, title: str
) -> dict[str, Any]:
    """One ``wandb.plot.confusion_matrix`` per indicator, keyed ``<prefix>/confusion/<name>``.

    Args:
        results: ``GradingMetrics`` results with the ``confusion/<name>`` count matrices.
        prefix: Where the charts go (``val``, ``final/test``).
        title: What the matrices show (``validation, epoch 3``), after the indicator's name.
    """
    import wandb

    charts = {}
    for name in INDICATOR_NAMES:
        counts = results[f"confusion/{name}"].cpu().numpy().astype(np.int64)
        cells = np.indices(counts.shape).reshape(2, -1)  # (true grade, predicted grade)
        true, predicted = np.repeat(cells, counts.ravel(), axis=1).tolist()
        charts[f"{prefix}/confusion/{name}"] = wandb.plot.confusion_matrix(
            y_true=true, preds=predicted, class_names=list(GRADES), title=f"{name}: {title}"
        )
    return charts


def _results_table(values: Mapping[str, torch.Tensor]) -> Any:
    import wandb

    rows = [
        [name, *(float(values[f"{key}/{name}"]) for key in TABLE_KEYS)] for name in INDICATOR_NAMES
    ]
    rows.append(["overall", *(float(values[key]) for key in TABLE_KEYS)])
    return wandb.Table(columns=["indicator", *TABLE_KEYS], data=rows)


def _summary(
    results: Mapping[str, Mapping[str, torch.Tensor]], evidence: Evidence
) -> dict[str, float | int | str]:
    """The final scalars, interval bounds and collapsed heads, keyed ``final/<split>/...``."""
    summary: dict[str, float | int | str] = {
        f"final/{split}/{key}": float(value)
        for split, values in results.items()
        for key, value in values.items()
        if value.ndim == 0
    }
    for split, intervals in evidence.intervals.items():
        for key, interval in intervals.items():
            summary[f"final/{split}/{key}_ci_low"] = interval.low
            summary[f"final/{split}/{key}_ci_high"] = interval.high
    for split, collapsed in evidence.collapsed.items():
        summary[f"final/{split}/collapsed_heads"] = len(collapsed)
        summary[f"final/{split}/collapsed_indicators"] = ", ".join(collapsed)
    return summary


def copy_into_run(run: Run, paths: list[Path]) -> None:
    """Copies files into the run's ``files/`` folder and uploads them once (``policy="now"``).

    Copies, not W&B's default symlinks: an offline run folder copied elsewhere keeps them.
    """
    files = Path(run.dir)
    for path in paths:
        shutil.copy2(path, files / path.name)
        run.save(str(files / path.name), base_path=str(files), policy="now", glob=False)


def log_results(
    trainer: L.Trainer,
    results: Mapping[str, Mapping[str, torch.Tensor]],
    evidence: Evidence,
    report_dir: Path,
) -> None:
    """Logs the final evaluation of each split under ``final/<split>/`` and uploads the report.

    The run summary holds every scalar (``final/test/macro_f1``, ...), not as another point of
    the per-epoch curves, the interval bounds (``final/test/macro_f1_ci_low``, ``..._ci_high``),
    the number of collapsed heads (``final/test/collapsed_heads``) and their names,
    comma-separated (``final/test/collapsed_indicators``). One history row, without an epoch,
    holds each split's table (``final/<split>/report``) and confusion matrices
    (``final/<split>/confusion/<name>``).
    ``report.md``, ``metrics.json`` and the figures of ``report_dir`` are copied into the run.
    Does nothing when the trainer has no W&B logger.
    """
    loggers = _wandb_loggers(trainer)
    if not loggers:
        return
    summary = _summary(results, evidence)
    files = [report_dir / name for name in REPORT_FILES] + sorted(report_dir.glob("*.png"))
    for logger in loggers:
        row: dict[str, Any] = {}  # W&B objects belong to the run that logs them: one row each
        for split, values in results.items():
            row[f"final/{split}/report"] = _results_table(values)
            row |= confusion_charts(values, f"final/{split}", f"{split} split, final evaluation")
        logger.experiment.summary.update(summary)
        logger.log_metrics(row)
        copy_into_run(logger.experiment, [path for path in files if path.is_file()])


def log_checkpoint(run: Run, checkpoint: Path) -> None:
    """Logs ``checkpoint`` as the run's ``model`` artifact (aliases ``best``, ``latest``).

    The file is copied into the run folder (``artifacts/``) and the artifact points there, not
    to W&B's staging folder in the user's home: a copied offline run folder holds it for
    ``wandb sync``.
    """
    import wandb

    staged = Path(run.settings.sync_dir) / "artifacts" / checkpoint.name
    staged.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(checkpoint, staged)
    artifact = wandb.Artifact(f"model-{run.id}", type="model")
    artifact.add_file(str(staged), name=checkpoint.name, policy="immutable")
    run.log_artifact(artifact, aliases=["best", "latest"])


class WandbMedia(L.Callback):
    """Logs to every ``WandbLogger`` of the run; does nothing without one.

    Each validation epoch: one confusion matrix per indicator (``val/confusion/<name>``) at that
    epoch. After fitting, optionally: the best checkpoint as a ``model`` artifact (aliases
    ``best``, ``latest``), kept inside the W&B run folder for ``wandb sync``. Checkpoints
    themselves stay in the run directory.

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
        epoch = trainer.current_epoch
        row = confusion_charts(results, "val", f"validation, epoch {epoch}") | {"epoch": epoch}
        for logger in loggers:
            logger.log_metrics(row, step=trainer.global_step)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Logs the best checkpoint as an artifact (when asked and one exists)."""
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        loggers = _wandb_loggers(trainer)
        if not (self.log_best_checkpoint and best and loggers and trainer.is_global_zero):
            return
        for logger in loggers:
            log_checkpoint(logger.experiment, Path(best))
