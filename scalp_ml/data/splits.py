"""Train / validation / test splits stratified over all 24 (indicator, grade) pairs.

Three strategies:

- ``image``: the study's protocol, iterative stratification per image. Shots of one person
  (a capture session) land in different splits, which inflates scores.
- ``session``: every capture session (one person) stays in one split; sessions are stratified
  on their summed (indicator, grade) counts.
- ``official``: the download's own ``Training`` / ``Validation`` folders; validation is halved
  into val and test by session, stratified the same way.

A split is computed once, saved as a JSON file and reused by every later run and sweep trial;
its SHA-256 is recorded beside each run's outputs.

Cross-validation (``data.split.folds=k``) keeps the test split exactly as without folds and
deals the other images into ``k`` folds, stratified the same way (whole sessions for
``session`` and ``official``, images for ``image``); fold ``i`` validates, the others train.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalp_ml.atomic import atomic_write_text, check_writable
from scalp_ml.labels import INDICATOR_NAMES, NUM_GRADES

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
STRATEGIES = ("image", "session", "official")
RARE_PAIR = 20  # below this many images, a pair's share weighs as if it had this many
REFINE_PASSES = 20


def grade_indicators(grades: np.ndarray) -> np.ndarray:
    """One-hot ``[N, 6]`` grades into ``[N, 24]`` binary (indicator, grade) columns."""
    return (grades[:, :, None] == np.arange(NUM_GRADES)).reshape(len(grades), -1).astype(int)


def stratified_split(grades: np.ndarray, ratios: Sequence[float], seed: int) -> np.ndarray:
    """Assigns each image to train (0), val (1) or test (2).

    Iterative stratification (``iterative-stratification``) over the 24 (indicator, grade)
    columns keeps every grade's share close to ``ratios`` in each split: first train against
    the rest, then the rest into validation and test.
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit  # slow: scikit-learn

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


def grouped_stratified_split(
    groups: Sequence[str], grades: np.ndarray, ratios: Sequence[float], seed: int
) -> np.ndarray:
    """Assigns each image to a split index so that every group stays in one split.

    Multi-label stratification on group level: each group (capture session) counts how many
    of its images hold each (indicator, grade) pair. Groups are first dealt out greedily,
    rarest pair first, each to the split that still lacks most of that pair (iterative
    stratification on counts); then single groups move between splits while that brings
    every pair's share per split, and the split sizes, closer to ``ratios``.

    Args:
        groups: Group id per image.
        grades: ``[N, 6]`` grades.
        ratios: Target share of each split (any number of splits), summing to 1.
        seed: Seed of the tie-breaking order.
    """
    if not np.isclose(sum(ratios), 1.0):
        raise ValueError(f"split ratios must sum to 1, got {list(ratios)}")
    rng = np.random.default_rng(seed)
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    counts = np.zeros((inverse.max() + 1, grades.shape[1] * NUM_GRADES))
    np.add.at(counts, inverse, grade_indicators(grades))
    # The group size is one more column, so sizes are balanced like the pairs.
    counts = np.column_stack([counts, counts[:, :NUM_GRADES].sum(axis=1)])
    wanted = np.asarray(ratios)[:, None] * counts.sum(axis=0)
    assignment = _deal_groups(counts, wanted, rng)
    return _refine_groups(assignment, counts, wanted, rng)[inverse]


def _deal_groups(counts: np.ndarray, wanted: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Greedy iterative stratification of groups on their pair counts."""
    missing = wanted.copy()
    assignment = np.full(len(counts), -1)
    order = rng.permutation(len(counts))
    while (assignment < 0).any():
        open_groups = order[assignment[order] < 0]
        totals = counts[open_groups, :-1].sum(axis=0)
        pair = int(np.argmin(np.where(totals > 0, totals, np.inf)))
        for group in open_groups[counts[open_groups, pair] > 0]:
            need = missing[:, pair] + 1e-6 * missing[:, -1]  # ties: the split lacking most images
            split = int(np.argmax(need))
            assignment[group] = split
            missing[split] -= counts[group]
    return assignment


def _refine_groups(
    assignment: np.ndarray, counts: np.ndarray, wanted: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Moves single groups between splits while the squared share errors decrease."""
    weights = 1 / np.maximum(counts.sum(axis=0), RARE_PAIR) ** 2
    weights[-1] *= counts.shape[1]  # the sizes weigh as much as all pairs together
    splits = np.arange(len(wanted))
    error = np.stack([counts[assignment == s].sum(axis=0) for s in splits]) - wanted
    for _ in range(REFINE_PASSES):
        moved = False
        for group in rng.permutation(len(counts)):
            source, count = assignment[group], counts[group]
            # Change of sum(weights * error**2) when the group moves to each split.
            change = 2 * ((error - error[source] + count) * count * weights).sum(axis=1)
            change[source] = 0
            target = int(np.argmin(change))
            if change[target] < -1e-12:
                error[source] -= count
                error[target] += count
                assignment[group] = target
                moved = True
        if not moved:
            break
    return assignment


def assign_splits(
    manifest: pd.DataFrame, strategy: str, ratios: Sequence[float], seed: int
) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) per manifest row under ``strategy``.

    Raises:
        ValueError: Unknown strategy, or ``official`` on images outside ``Training`` and
            ``Validation`` folders.
    """
    grades = manifest[list(INDICATOR_NAMES)].to_numpy()
    if strategy == "image":
        return stratified_split(grades, ratios, seed)
    if strategy == "session":
        if len(ratios) != len(SPLITS):
            raise ValueError(f"split ratios must be three numbers, got {list(ratios)}")
        return grouped_stratified_split(manifest["session"].tolist(), grades, ratios, seed)
    if strategy == "official":
        return _official_split(manifest, grades, seed)
    raise ValueError(f"data.split.strategy must be one of {'|'.join(STRATEGIES)}, got {strategy!r}")


def _official_split(manifest: pd.DataFrame, grades: np.ndarray, seed: int) -> np.ndarray:
    """Training folders train; Validation folders halved into val and test by session."""
    subsets = manifest["subset"].to_numpy()
    outside = ~np.isin(subsets, ("Training", "Validation"))
    if outside.any():
        raise ValueError(
            f"data.split.strategy=official needs every image under a Training or Validation "
            f"folder or archive; {outside.sum()} are in neither, e.g. "
            f"{manifest['image'][outside].iloc[0]}"
        )
    assignment = np.zeros(len(manifest), dtype=int)
    validation = np.flatnonzero(subsets == "Validation")
    if len(validation):
        sessions = manifest["session"].to_numpy()[validation]
        halves = grouped_stratified_split(sessions, grades[validation], (0.5, 0.5), seed)
        assignment[validation] = 1 + halves
    return assignment


def assign_folds(manifest: pd.DataFrame, strategy: str, folds: int, seed: int) -> np.ndarray:
    """Fold index (0 to ``folds - 1``) per manifest row, stratified over the 24 pairs.

    ``image``: multi-label stratified k-fold per image (``iterative-stratification``);
    ``session`` and ``official``: whole capture sessions dealt like the session split.
    """
    grades = manifest[list(INDICATOR_NAMES)].to_numpy()
    if strategy == "image":
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold  # slow: scikit-learn

        assignment = np.zeros(len(manifest), dtype=int)
        splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        for fold, (_, members) in enumerate(splitter.split(grades, grade_indicators(grades))):
            assignment[members] = fold
        return assignment
    return grouped_stratified_split(manifest["session"].tolist(), grades, [1 / folds] * folds, seed)


def check_fold(folds: int | None, fold: int) -> None:
    """Raises ``ValueError`` naming the key when ``data.split.folds`` / ``fold`` do not fit."""
    if folds is None:
        return
    if folds < 2:
        raise ValueError(f"data.split.folds={folds}: cross-validation needs at least 2 folds")
    if not 0 <= fold < folds:
        raise ValueError(f"data.split.fold={fold}: choose a fold from 0 to {folds - 1}")


def images_fingerprint(names: Sequence[str]) -> str:
    """SHA-256 of the sorted image names: tells whether a split file fits a manifest."""
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def default_split_path(
    root: str | Path,
    ratios: Sequence[float],
    seed: int,
    strategy: str = "image",
    folds: int | None = None,
) -> Path:
    """Where a split is saved beside the data: ``.scalp_ml/splits/session-70-15-15-seed42.json``.

    An ``official`` split ignores the ratios: ``official-seed42.json``; folds add ``-5fold``.
    """
    percents = "" if strategy == "official" else "-".join(f"{round(r * 100):d}" for r in ratios)
    cross = f"{folds}fold" if folds else ""
    name = "-".join(part for part in (strategy, percents, f"seed{seed}", cross) if part)
    return Path(root) / ".scalp_ml" / "splits" / f"{name}.json"


def split_file_for(root: str | Path, split: Mapping[str, Any]) -> Path:
    """The split file of a ``data.split`` config: its ``file``, or the default beside the data.

    A config without ``strategy`` (checkpoints that predate it) means ``image``.
    """
    strategy = split.get("strategy", "image")
    return Path(
        split.get("file")
        or default_split_path(root, split["ratios"], split["seed"], strategy, split.get("folds"))
    )


def load_or_create_split(
    manifest: pd.DataFrame,
    path: str | Path,
    ratios: Sequence[float],
    seed: int,
    strategy: str = "image",
    folds: int | None = None,
    fold: int = 0,
) -> dict[str, list[str]]:
    """Returns image names per split, reading ``path`` or creating it on first use.

    The file records the strategy, seed, ratios, the images' fingerprint and the images and
    capture sessions per split; with ``folds`` also the images of each fold (the train and
    validation images of the split without folds, dealt anew), of which ``fold`` validates
    and the others train.

    Raises:
        ValueError: ``path`` was made for another set of images, strategy, ratios, seed or
            number of folds, or ``fold`` is not one of them.
    """
    check_fold(folds, fold)
    path = Path(path)
    fingerprint = images_fingerprint(manifest["name"].tolist())
    expected = {"strategy": strategy, "images_sha256": fingerprint, "seed": seed, "folds": folds}
    if strategy != "official":
        expected["ratios"] = list(ratios)
    if path.is_file():
        saved = read_split_file(path)
        found = {key: saved.get(key) for key in expected}
        if found != expected:
            raise ValueError(
                f"Split file {path} does not fit this run: it records {found}, the run needs "
                f"{expected}. The images, strategy, ratios, seed or folds changed; delete the "
                "file to make a new split, or point data.split.file elsewhere."
            )
        check_split_file(saved, path, set(manifest["name"]))
        # DEBUG: every stage of a run reads the split again; the datamodule logs it once
        log.debug("Using the %s split %s (%s)", strategy, path, saved["counts"])
    else:
        check_writable(path, "split file", "data.split.file", "/tmp/split.json")
        saved = _split_record(manifest, strategy, ratios, seed, folds) | expected
        atomic_write_text(path, json.dumps(saved, indent=1))
        log.info("Wrote the %s split %s (%s)", strategy, path, saved["counts"])
    if folds is None:
        return saved["splits"]
    validation = saved["folds_images"][fold]
    training = [names for index, names in enumerate(saved["folds_images"]) if index != fold]
    return {
        "train": sorted(name for names in training for name in names),
        "val": validation,
        "test": saved["splits"]["test"],
    }


def read_split_file(path: Path) -> dict[str, Any]:
    """A split file's contents.

    Raises:
        ValueError: The file is not a JSON object (truncated, or not a split file).
    """
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"Split file {path} is not valid JSON ({error}); it may have been cut off. Delete "
            "it to make the split again (the same seed gives the same split)."
        ) from error
    if not isinstance(saved, dict) or not isinstance(saved.get("splits"), dict):
        raise ValueError(f"Split file {path} is not a scalp_ml split file (no 'splits' object)")
    return saved


def check_split_file(saved: Mapping[str, Any], path: Path, names: set[str]) -> None:
    """Refuses a split file whose lists were changed by hand or do not fit the images.

    Every image of ``names`` must be in exactly one of train, val and test, the recorded counts
    must match the lists, and folds (if any) must share out train + val without overlap.

    Raises:
        ValueError: Names the file and the first problem found.
    """
    splits = saved["splits"]
    owner: dict[str, str] = {}
    for split in SPLITS:
        members = splits.get(split, [])
        if len(members) != saved.get("counts", {}).get(split):
            raise ValueError(
                f"Split file {path}: {split} lists {len(members)} images but records "
                f"{saved.get('counts', {}).get(split)}; it was edited. Delete it to make the "
                "split again, or restore it."
            )
        for name in members:
            if name in owner:
                raise ValueError(
                    f"Split file {path}: {name} is in both {owner[name]} and {split} (a leak); "
                    "delete the file to make the split again, or restore it."
                )
            owner[name] = split
    if owner.keys() != names:
        stray = sorted(owner.keys() - names) or sorted(names - owner.keys())
        where = "not in the data" if owner.keys() - names else "in no split"
        raise ValueError(f"Split file {path}: image {stray[0]} is {where}; the file was edited")
    if "folds_images" in saved:
        dealt = [name for fold in saved["folds_images"] for name in fold]
        rest = {name for name, split in owner.items() if split != "test"}
        if len(dealt) != len(set(dealt)) or set(dealt) != rest:
            raise ValueError(
                f"Split file {path}: its folds do not share out the train and validation "
                "images exactly once (a test image in a fold, or one image in two folds)"
            )


def _split_record(
    manifest: pd.DataFrame,
    strategy: str,
    ratios: Sequence[float],
    seed: int,
    folds: int | None,
) -> dict[str, Any]:
    """A new split file's contents: the split's images and sessions (and folds) with counts."""
    assignment = assign_splits(manifest, strategy, ratios, seed)
    names = manifest["name"].to_numpy()
    sessions = manifest["session"].to_numpy() if "session" in manifest else names
    splits = {
        split: sorted(names[assignment == index].tolist()) for index, split in enumerate(SPLITS)
    }
    record: dict[str, Any] = {
        "ratios": list(ratios),
        "counts": {split: len(members) for split, members in splits.items()},
        "sessions": {
            split: len(set(sessions[assignment == index])) for index, split in enumerate(SPLITS)
        },
        "splits": splits,
    }
    if folds is not None:
        rest = np.flatnonzero(assignment != SPLITS.index("test"))
        fold_of = assign_folds(manifest.iloc[rest], strategy, folds, seed)
        record["folds_images"] = [sorted(names[rest[fold_of == f]].tolist()) for f in range(folds)]
        record["folds_counts"] = [int((fold_of == f).sum()) for f in range(folds)]
        record["folds_sessions"] = [len(set(sessions[rest[fold_of == f]])) for f in range(folds)]
    return record
