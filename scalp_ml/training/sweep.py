"""Sweep bookkeeping: one summary table of every job of a Hydra multirun.

``conf/hydra/default.yaml`` registers :class:`SweepSummary`, so every job of ``python -m
scalp_ml.train -m ...`` (grid or Optuna) rewrites ``<sweep dir>/sweep_summary.csv`` as it
ends, finished, failed or pruned (an Optuna trial its pruner stopped): one row per job with its
status (and error), one column per swept parameter, its overrides, run directory, split hash
and the best checkpoint's validation and test metrics, best first by the monitored metric. A
failed job never costs the others' rows. A multirun over the folds of a cross-validation also
gets ``cv_summary.csv`` and ``oof_predictions.csv`` (:mod:`scalp_ml.training.cross_validation`).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from scalp_ml.atomic import atomic_write_text
from scalp_ml.evaluation.metrics import SUMMARY_KEYS
from scalp_ml.training.cross_validation import FOLD_KEY, fold_of, summarize_folds
from scalp_ml.training.cross_validation import SUMMARY_FILE as CV_SUMMARY

log = logging.getLogger(__name__)

SUMMARY_FILE = "sweep_summary.csv"
STATUS_FILE = "job_status.json"  # written by SweepSummary when a job ends


def job_row(job_dir: Path) -> dict[str, Any]:
    """One job's overrides, status, split hash and headline metrics (read from its files).

    A ``cross_validate=true`` job gives the folds' mean validation metrics.
    """
    row: dict[str, Any] = {"job": job_dir.name, "overrides": " ".join(job_overrides(job_dir))}
    metrics_file, info_file = job_dir / "metrics.json", job_dir / "run_info.json"
    folds_file, status_file = job_dir / CV_SUMMARY, job_dir / STATUS_FILE
    ended = json.loads(status_file.read_text()) if status_file.is_file() else {}
    done = metrics_file.is_file() or folds_file.is_file()
    row["status"] = ended.get("status", "finished" if done else "running or killed")
    row["error"] = ended.get("error", "")
    row["run_dir"] = str(job_dir)
    if info_file.is_file():
        row["split_sha256"] = json.loads(info_file.read_text())["split_sha256"]
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        row["checkpoint"] = metrics["context"]["checkpoint"]
        for stage in ("val", "test"):
            row |= {f"{stage}/{key}": metrics[stage][key] for key in SUMMARY_KEYS}
    elif folds_file.is_file():
        row["status"] += " (cross-validation: mean of the folds)"
        means = pd.read_csv(folds_file).set_index("metric")["mean"]
        row |= {f"val/{key}": means[f"val/{key}"] for key in SUMMARY_KEYS}
    return row


def job_overrides(job_dir: Path) -> list[str]:
    """A multirun job's command-line overrides (``.hydra/overrides.yaml``)."""
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    return (yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []) or []


def multirun_folds(job_dirs: Sequence[Path]) -> dict[str, list[Path]]:
    """The fold jobs of a multirun, grouped by their overrides without the fold."""
    groups: dict[str, list[Path]] = {}
    for job_dir in job_dirs:
        if fold_of(job_dir) is not None:
            others = [o for o in job_overrides(job_dir) if not o.startswith(f"{FOLD_KEY}=")]
            groups.setdefault(" ".join(others), []).append(job_dir)
    return groups


def sweep_jobs(sweep_dir: Path) -> list[Path]:
    """The job folders of a multirun (those holding a ``.hydra`` folder), in job-number order."""
    return sorted(
        (path for path in sweep_dir.iterdir() if (path / ".hydra").is_dir()),
        key=lambda path: (not path.name.isdigit(), int(path.name) if path.name.isdigit() else 0),
    )


def summarize_sweep(sweep_dir: Path, metric: str = "val/macro_f1", mode: str = "max") -> Path:
    """Writes ``sweep_summary.csv`` with a row per job folder of ``sweep_dir``.

    Each override key whose value differs between jobs gets its own column; rows are sorted
    by ``metric`` (best first by ``mode``), jobs without it last.
    """
    jobs = sweep_jobs(sweep_dir)
    table = pd.DataFrame([job_row(job) for job in jobs])
    settings = [dict(_key_value(o) for o in job_overrides(job)) for job in jobs]
    swept = pd.DataFrame(settings, index=table.index)
    varying = [key for key in swept.columns if swept[key].nunique(dropna=False) > 1]
    table = pd.concat(
        [table[["job", "status"]], swept[varying], table.drop(columns=["job", "status"])], axis=1
    )
    if metric in table:
        table = table.sort_values(
            metric, ascending=mode == "min", na_position="last", kind="stable"
        )
    return atomic_write_text(sweep_dir / SUMMARY_FILE, table.to_csv(index=False))


def _pruned(error: Exception) -> bool:
    """Whether a job's error is an Optuna trial stopped by its pruner (not a failure).

    Only a search raises one, so without Optuna imported (or installed) it is a failure.
    """
    optuna = sys.modules.get("optuna")
    return optuna is not None and isinstance(error, optuna.TrialPruned)


def _key_value(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key, value


class SweepSummary(Callback):
    """Hydra callback: the sweep summary, rewritten as each job ends and when the sweep ends."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """Records the job's end (finished, or failed with its error) and rewrites the summary."""
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        failed = job_return.status == JobStatus.FAILED
        ended = {"status": "failed" if failed else "finished"}
        if failed:
            try:
                job_return.return_value  # noqa: B018  (re-raises the job's exception)
            except Exception as error:  # any exception a job can raise
                ended["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
                ended["status"] = "pruned" if _pruned(error) else "failed"
        atomic_write_text(job_dir / STATUS_FILE, json.dumps(ended))
        sweep_dir = self._summarize(config)
        folds = multirun_folds(sweep_jobs(sweep_dir)) if sweep_dir else {}
        if folds:  # Hydra skips on_multirun_end when a job failed: the folds that finished count
            summarize_folds(folds, sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Summarises the jobs under ``hydra.sweep.dir``, and the folds of a cross-validation."""
        sweep_dir = self._summarize(config)
        if sweep_dir is not None:
            log.info("Sweep summary written to %s", sweep_dir / SUMMARY_FILE)
            folds = multirun_folds(sweep_jobs(sweep_dir))
            if folds and (summary := summarize_folds(folds, sweep_dir)):
                log.info("Cross-validation summary written to %s", summary)

    @staticmethod
    def _summarize(config: DictConfig) -> Path | None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return None
        monitor = config.get("monitor") or {}
        summarize_sweep(
            sweep_dir, monitor.get("metric", "val/macro_f1"), monitor.get("mode", "max")
        )
        return sweep_dir
