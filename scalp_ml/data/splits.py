"""Train / validation / test splits stratified over all 24 (indicator, grade) pairs.

A split is computed once, saved as a JSON file and reused by every later run and sweep trial;
its SHA-256 is recorded beside each run's outputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

from scalp_ml.io import atomic_write_text
from scalp_ml.labels import INDICATOR_NAMES, NUM_GRADES

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def grade_indicators(grades: np.ndarray) -> np.ndarray:
    """One-hot ``[N, 6]`` grades into ``[N, 24]`` binary (indicator, grade) columns."""
    return (grades[:, :, None] == np.arange(NUM_GRADES)).reshape(len(grades), -1).astype(int)


def stratified_split(grades: np.ndarray, ratios: Sequence[float], seed: int) -> np.ndarray:
    """Assigns each image to train (0), val (1) or test (2).

    Iterative stratification (``iterative-stratification``) over the 24 (indicator, grade)
    columns keeps every grade's share close to ``ratios`` in each split: first train against
    the rest, then the rest into validation and test.
    """
    if not np.isclose(sum(ratios), 1.0) or len(ratios) != len(SPLITS):
        raise ValueError(f"split ratios must be three numbers summing to 1, got {list(ratios)}")
    targets = grade_indicators(grades)
    assignment = np.zeros(len(grades), dtype=int)
    _, val_ratio, test_ratio = ratios
    first = MultilabelStratifiedShuffleSplit(
        n_splits=1, test_size=val_ratio + test_ratio, random_state=seed
    )
    _, rest = next(first.split(np.zeros(len(grades)), targets))
    second = MultilabelStratifiedShuffleSplit(
        n_splits=1, test_size=test_ratio / (val_ratio + test_ratio), random_state=seed
    )
    val, test = next(second.split(np.zeros(len(rest)), targets[rest]))
    assignment[rest[val]] = 1
    assignment[rest[test]] = 2
    return _match_sizes(assignment, targets, ratios)


def _match_sizes(
    assignment: np.ndarray, targets: np.ndarray, ratios: Sequence[float]
) -> np.ndarray:
    """Moves the few images by which iterative stratification misses the ratios' sizes.

    Each move takes, from a split that is too large, the image whose (indicator, grade) pairs
    that split holds most in excess of its share, so the stratification is kept.
    """
    wanted = np.round(np.asarray(ratios) * len(assignment)).astype(int)
    wanted[0] = len(assignment) - wanted[1:].sum()
    totals = targets.sum(axis=0)
    while True:
        gap = np.bincount(assignment, minlength=len(SPLITS)) - wanted
        if not gap.any():
            return assignment
        source, destination = int(np.argmax(gap)), int(np.argmin(gap))
        members = np.flatnonzero(assignment == source)
        excess = targets[members].sum(axis=0) - ratios[source] * totals
        assignment[members[np.argmax(targets[members] @ excess)]] = destination


def images_fingerprint(names: Sequence[str]) -> str:
    """SHA-256 of the sorted image names: tells whether a split file fits a manifest."""
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def default_split_path(root: str | Path, ratios: Sequence[float], seed: int) -> Path:
    """Where a split is saved beside the data: ``.scalp_ml/splits/image-70-15-15-seed42.json``."""
    percents = "-".join(f"{round(r * 100):d}" for r in ratios)
    return Path(root) / ".scalp_ml" / "splits" / f"image-{percents}-seed{seed}.json"


def load_or_create_split(
    manifest: pd.DataFrame, path: str | Path, ratios: Sequence[float], seed: int
) -> dict[str, list[str]]:
    """Returns image names per split, reading ``path`` or creating it on first use.

    Raises:
        ValueError: ``path`` was made for another set of images or other ratios or seed.
    """
    path = Path(path)
    fingerprint = images_fingerprint(manifest["name"].tolist())
    if path.is_file():
        saved = json.loads(path.read_text())
        expected = {"images_sha256": fingerprint, "ratios": list(ratios), "seed": seed}
        found = {key: saved.get(key) for key in expected}
        if found != expected:
            raise ValueError(
                f"Split file {path} does not fit this run: it records {found}, the run needs "
                f"{expected}. The images, ratios or seed changed; delete the file to make a "
                "new split, or point data.split.file elsewhere."
            )
        log.info("Using split %s (%s)", path, saved["counts"])
        return saved["splits"]
    assignment = stratified_split(manifest[list(INDICATOR_NAMES)].to_numpy(), ratios, seed)
    names = manifest["name"].to_numpy()
    splits = {
        split: sorted(names[assignment == index].tolist()) for index, split in enumerate(SPLITS)
    }
    record = {
        "strategy": "image",
        "seed": seed,
        "ratios": list(ratios),
        "images_sha256": fingerprint,
        "counts": {split: len(members) for split, members in splits.items()},
        "splits": splits,
    }
    atomic_write_text(path, json.dumps(record, indent=1))
    log.info("Wrote split %s (%s)", path, record["counts"])
    return splits
