"""Cross-validation over the folds of the split file (``data.split.folds=k``).

Two ways to run it, one summary: a Hydra multirun with one job per fold (``-m
data.split.folds=5 'data.split.fold=range(5)'``, or ``cv=kfold``; SLURM runs each fold as its
own job), summarised when the multirun ends (:class:`scalp_ml.training.sweep.SweepSummary`), or
``cross_validate=true``, which trains every fold in turn inside one job (``fold<i>/`` run
directories) and returns the mean monitored metric (what an Optuna trial optimises).

Either way the folds of one configuration give ``cv_summary.csv`` (every scalar validation
metric: mean, sd and each fold's value), ``oof_predictions.csv`` (the out-of-fold
predictions: each non-test image graded by the fold model that did not train on it) and
``oof_decision_offsets.json`` (decision offsets fitted on the out-of-fold predictions instead
of one validation split, with their cross-fitted gain).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from omegaconf import DictConfig

from scalp_ml.atomic import atomic_write_text
from scalp_ml.evaluation.offsets import apply_offsets, fit_offsets, overall_macro_f1
from scalp_ml.evaluation.predictions import Predictions

log = logging.getLogger(__name__)

SUMMARY_FILE = "cv_summary.csv"
OOF_FILE = "oof_predictions.csv"
OFFSETS_FILE = "oof_decision_offsets.json"
FOLD_KEY = "data.split.fold"


def fold_of(run_dir: Path) -> tuple[int, int] | None:
    """``(fold, folds)`` of a cross-validation run directory (``None``: not a fold run)."""
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        return None
    split = yaml.safe_load(config_file.read_text())["data"]["split"]
    return None if not split.get("folds") else (int(split.get("fold") or 0), int(split["folds"]))


def run_metrics(run_dir: Path, splits: Sequence[str] = ("val",)) -> dict[str, float]:
    """A finished run's scalar metrics of ``splits``, keyed ``<split>/<metric>``."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        f"{split}/{key}": value
        for split in splits
        for key, value in metrics[split].items()
        if isinstance(value, float)
    }


def summarize_folds(groups: Mapping[str, Sequence[Path]], out_dir: Path) -> Path | None:
    """Writes ``cv_summary.csv`` and ``oof_predictions.csv`` for the fold runs of each group.

    Args:
        groups: Fold run directories per configuration (its overrides without the fold).
        out_dir: Where both files go.

    Returns:
        The summary file, or ``None`` when no fold run had finished.
    """
    summaries, predictions, offsets = [], [], {}
    for group, run_dirs in groups.items():
        finished = sorted(
            (*position, run_dir)
            for run_dir in run_dirs
            if (position := fold_of(run_dir)) and (run_dir / "metrics.json").is_file()
        )
        if len(finished) < len(run_dirs):
            log.warning(
                "Cross-validation %r: %d of %d fold runs finished",
                group,
                len(finished),
                len(run_dirs),
            )
        if not finished:
            continue
        folds = finished[0][1]
        per_fold = pd.DataFrame({f"fold_{fold}": run_metrics(run) for fold, _, run in finished})
        summary = per_fold.agg(["mean", "std"], axis=1).rename(columns={"std": "sd"})
        summary = pd.concat([summary, per_fold], axis=1).rename_axis("metric").reset_index()
        summary.insert(0, "folds_finished", f"{len(finished)}/{folds}")
        summary.insert(0, "group", group)
        summaries.append(summary)
        tables = [
            pd.read_csv(run / "predictions_val.csv", dtype={"name": str, "session": str}).assign(
                group=group, fold=fold, run_dir=str(run)
            )
            for fold, _, run in finished
        ]
        predictions += tables
        offsets[group] = oof_offsets(pd.concat(tables, ignore_index=True))
        mean = summary.set_index("metric").loc["val/macro_f1"]
        log.info(
            "Cross-validation %s: val/macro_f1 %.4f ± %.4f over %s folds",
            group or "(no overrides)",
            mean["mean"],
            mean["sd"],
            len(finished),
        )
    if not summaries:
        return None
    atomic_write_text(out_dir / OOF_FILE, pd.concat(predictions).to_csv(index=False))
    atomic_write_text(out_dir / OFFSETS_FILE, json.dumps(offsets, indent=1))
    return atomic_write_text(out_dir / SUMMARY_FILE, pd.concat(summaries).to_csv(index=False))


def oof_offsets(oof: pd.DataFrame, seed: int = 0) -> dict[str, Any]:
    """Decision offsets fitted on out-of-fold predictions, and what they gain.

    The gain is cross-fitted: each fold's images are scored with offsets fitted on the other
    folds' predictions only, so it estimates what the offsets do on unseen images.
    """
    found = Predictions.from_table(oof)
    folds = oof["fold"].to_numpy()
    crossfitted = np.empty_like(found.probabilities)
    for fold in np.unique(folds):
        inside = folds == fold
        fitted = fit_offsets(found.probabilities[~inside], found.grades[~inside], seed)
        crossfitted[inside] = apply_offsets(found.probabilities[inside], fitted)
    return {
        "offsets": fit_offsets(found.probabilities, found.grades, seed).tolist(),
        "images": len(oof),
        "oof_macro_f1": overall_macro_f1(found.grades, found.predicted),
        "oof_macro_f1_crossfitted_offsets": overall_macro_f1(
            found.grades, crossfitted.argmax(axis=-1)
        ),
    }


def cross_validate(
    cfg: DictConfig, train_one: Callable[[DictConfig], dict[str, float]]
) -> dict[str, float]:
    """Trains every fold of ``cfg`` in turn (``<run_dir>/fold<i>``) and summarises them.

    A fold whose run directory holds a finished run is reused and an interrupted one resumes
    from its ``last.ckpt``, so the same command with ``hydra.run.dir=<that run's directory>``
    completes a cut-off cross-validation; ``overwrite=true`` trains every fold afresh.

    Returns:
        Every metric of ``train_one``'s result, averaged over the folds.

    Raises:
        ValueError: ``data.split.folds`` is not set, or ``ckpt_path`` names one checkpoint
            (each fold resumes from its own ``last.ckpt``).
    """
    folds = cfg.data.split.folds
    if not folds:
        raise ValueError("cross_validate=true needs data.split.folds=<k> (k >= 2)")
    if cfg.ckpt_path not in (None, "last"):
        raise ValueError(
            f"cross_validate=true with ckpt_path={cfg.ckpt_path}: each fold resumes from its "
            "own fold<i>/checkpoints/last.ckpt; pass ckpt_path=last or nothing"
        )
    run_dir = Path(cfg.run_dir)
    fold_dirs, results = [], []
    for fold in range(folds):
        fold_dir = run_dir / f"fold{fold}"
        fold_dirs.append(fold_dir)
        if (fold_dir / "metrics.json").is_file() and not cfg.overwrite:
            log.info("Fold %d of %d finished before: reusing %s", fold, folds, fold_dir)
            results.append(run_metrics(fold_dir, ("val", "test")))
            continue
        fold_cfg = cfg.copy()
        fold_cfg.data.split.fold = fold
        fold_cfg.run_dir = str(fold_dir)
        resumable = (fold_dir / "checkpoints" / "last.ckpt").is_file() and not cfg.overwrite
        fold_cfg.ckpt_path = "last" if resumable else None
        fold_cfg.overwrite = True  # a fold that stopped before its first checkpoint restarts
        log.info("Fold %d of %d: %s", fold, folds, fold_dir)
        results.append(train_one(fold_cfg))
    summarize_folds({"": fold_dirs}, run_dir)
    keys = set.intersection(*(set(result) for result in results))
    return {key: sum(result[key] for result in results) / len(results) for key in sorted(keys)}
