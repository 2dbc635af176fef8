"""Sweep bookkeeping: one summary table of every job of a Hydra multirun.

``conf/hydra/default.yaml`` registers :class:`SweepSummary`, so ``python -m scalp_ml.train -m
...`` (grid or Optuna) ends by writing ``<sweep dir>/sweep_summary.csv``: one row per job with
its overrides, run directory, split hash and the best checkpoint's validation and test metrics.
A multirun over the folds of a cross-validation also gets ``cv_summary.csv`` and
``oof_predictions.csv`` (:mod:`scalp_ml.training.cross_validation`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from scalp_ml.atomic import atomic_write_text
from scalp_ml.evaluation.metrics import SUMMARY_KEYS
from scalp_ml.training.cross_validation import SUMMARY_FILE as CV_SUMMARY
from scalp_ml.training.cross_validation import multirun_folds, summarize_folds

log = logging.getLogger(__name__)

SUMMARY_FILE = "sweep_summary.csv"


def job_row(job_dir: Path) -> dict[str, Any]:
    """One job's overrides, status, split hash and headline metrics (read from its files).

    A ``cross_validate=true`` job gives the folds' mean validation metrics.
    """
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    row: dict[str, Any] = {"job": job_dir.name, "overrides": " ".join(overrides or [])}
    metrics_file, info_file = job_dir / "metrics.json", job_dir / "run_info.json"
    folds_file = job_dir / CV_SUMMARY
    row["status"] = "failed or unfinished"
    row["run_dir"] = str(job_dir)
    if info_file.is_file():
        row["split_sha256"] = json.loads(info_file.read_text())["split_sha256"]
    if metrics_file.is_file():
        row["status"] = "finished"
        metrics = json.loads(metrics_file.read_text())
        row["checkpoint"] = metrics["context"]["checkpoint"]
        for stage in ("val", "test"):
            row |= {f"{stage}/{key}": metrics[stage][key] for key in SUMMARY_KEYS}
    elif folds_file.is_file():
        row["status"] = "finished (cross-validation: mean of the folds)"
        means = pd.read_csv(folds_file).set_index("metric")["mean"]
        row |= {f"val/{key}": means[f"val/{key}"] for key in SUMMARY_KEYS}
    return row


def sweep_jobs(sweep_dir: Path) -> list[Path]:
    """The job folders of a multirun (those holding a ``.hydra`` folder), in job-number order."""
    return sorted(
        (path for path in sweep_dir.iterdir() if (path / ".hydra").is_dir()),
        key=lambda path: (not path.name.isdigit(), int(path.name) if path.name.isdigit() else 0),
    )


def summarize_sweep(sweep_dir: Path) -> Path:
    """Writes ``sweep_summary.csv`` with a row per job folder of ``sweep_dir``.

    A job that did not finish is listed with its status and no metrics.
    """
    table = pd.DataFrame([job_row(job) for job in sweep_jobs(sweep_dir)])
    return atomic_write_text(sweep_dir / SUMMARY_FILE, table.to_csv(index=False))


class SweepSummary(Callback):
    """Hydra callback: writes the sweep summary when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Summarises the jobs under ``hydra.sweep.dir``."""
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            log.info("Sweep summary written to %s", summarize_sweep(sweep_dir))
            folds = multirun_folds(sweep_jobs(sweep_dir))
            if folds and (summary := summarize_folds(folds, sweep_dir)):
                log.info("Cross-validation summary written to %s", summary)
