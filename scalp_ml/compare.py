"""Paired comparison of two models on one split: ``python -m scalp_ml.compare A B``.

A and B are training run or evaluation directories holding ``predictions_<split>.csv`` (and
``metrics.json``), or prediction CSV files (``metrics.json`` is then looked for beside them).
The report gives both models' macro-F1 (overall and per indicator), Hamming accuracy and
kappa, and the difference B - A with its paired session-bootstrap 95 % interval and two-sided
p-value.
Comparisons across different splits are refused. Deliberately free of torch: it starts fast.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalp_ml.atomic import atomic_write_text
from scalp_ml.evaluation.bootstrap import (
    metrics_from_confusions,
    paired_difference,
    session_confusions,
)
from scalp_ml.labels import INDICATOR_NAMES, NUM_GRADES

LEVEL = 0.95
TRUE_COLUMNS = tuple(f"{name}_true" for name in INDICATOR_NAMES)
PREDICTED_COLUMNS = tuple(f"{name}_predicted" for name in INDICATOR_NAMES)
# The columns a comparison reads; the grade probabilities of the file are not needed.
REQUIRED_COLUMNS = ("name", "session", *TRUE_COLUMNS, *PREDICTED_COLUMNS)


class CompareError(Exception):
    """Inputs that cannot be compared; the message names the file(s) and the problem."""


@dataclass(frozen=True)
class Predictions:
    """One model's graded images.

    Attributes:
        source: The predictions CSV file.
        table: Its required columns, one row per image.
        split_sha256: The hash of the split file it was graded on, where ``metrics.json`` says.
        images_sha256: The hash of the graded split's image names, where recorded (a fold
            split file and the split without folds share their test images).
    """

    source: Path
    table: pd.DataFrame
    split_sha256: str | None
    images_sha256: str | None = None


def load_predictions(path: Path, split: str) -> Predictions:
    """Reads ``path``: a predictions CSV, or a directory holding ``predictions_<split>.csv``.

    Raises:
        CompareError: The file is missing or unreadable, lacks a required column, holds an
            empty cell, a grade outside 0..3 or a repeated image name.
    """
    csv = path / f"predictions_{split}.csv" if path.is_dir() else path
    if not csv.is_file():
        raise CompareError(f"{csv}: no such file")
    try:
        table = pd.read_csv(csv, dtype={"name": str, "session": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise CompareError(f"{csv}: not a readable CSV file ({error})") from error
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise CompareError(f"{csv}: missing column(s) {', '.join(missing)}")
    table = table[list(REQUIRED_COLUMNS)]
    empty = table.columns[table.isna().any()].tolist()
    if empty:
        raise CompareError(f"{csv}: empty cells in column(s) {', '.join(empty)}")
    grade_columns = [*TRUE_COLUMNS, *PREDICTED_COLUMNS]
    invalid = table.columns[~table.isin(range(NUM_GRADES)).all()].intersection(grade_columns)
    if len(invalid):
        raise CompareError(
            f"{csv}: grades other than 0..{NUM_GRADES - 1} in column(s) {', '.join(invalid)}"
        )
    repeated = table["name"][table["name"].duplicated()].tolist()
    if repeated:
        raise CompareError(f"{csv}: {len(repeated)} repeated image name(s), e.g. {repeated[0]}")
    return Predictions(
        csv, table, split_hash(csv.parent / "metrics.json"), graded_hash(csv.parent, split)
    )


def split_hash(metrics_file: Path) -> str | None:
    """``context.split_sha256`` of an evaluation's ``metrics.json``; None where not recorded.

    Raises:
        CompareError: The file exists but is not valid JSON.
    """
    return _context(metrics_file).get("split_sha256")


def graded_hash(folder: Path, split: str) -> str | None:
    """``context.images_sha256.<split>`` of ``folder/metrics.json``; None where not recorded."""
    graded = _context(folder / "metrics.json").get("images_sha256")
    return graded.get(split) if isinstance(graded, dict) else None


def _context(metrics_file: Path) -> dict[str, Any]:
    """The ``context`` of a ``metrics.json`` (empty when the file or the key is missing).

    Raises:
        CompareError: The file exists but is not valid JSON.
    """
    if not metrics_file.is_file():
        return {}
    try:
        document = json.loads(metrics_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CompareError(f"{metrics_file}: not valid JSON ({error})") from error
    context = document.get("context") if isinstance(document, dict) else None
    return context if isinstance(context, dict) else {}


def paired_grades(
    a: Predictions, b: Predictions
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sessions, true grades and both models' predictions of the same images, row by row.

    Raises:
        CompareError: A and B were graded on different splits: different split hashes (the
            graded images' hashes where both record them), image sets, sessions or true grades.
    """
    both = f"{a.source} and {b.source}"
    same_images = a.images_sha256 is not None and a.images_sha256 == b.images_sha256
    if not same_images and a.split_sha256 and b.split_sha256 and a.split_sha256 != b.split_sha256:
        raise CompareError(
            f"{both} were graded on different splits "
            f"(split_sha256 {a.split_sha256[:12]}… vs {b.split_sha256[:12]}…)"
        )
    names_a, names_b = set(a.table["name"]), set(b.table["name"])
    if names_a != names_b:
        only_a, only_b = sorted(names_a - names_b), sorted(names_b - names_a)
        raise CompareError(
            f"{both} grade different images: {len(only_a)} only in A, {len(only_b)} only in B "
            f"(e.g. {(only_a or only_b)[0]})"
        )
    merged = a.table.merge(b.table, on="name", suffixes=("_a", "_b"), validate="one_to_one")
    labels = ["session", *TRUE_COLUMNS]
    differ = (
        merged[[f"{c}_a" for c in labels]].to_numpy()
        != merged[[f"{c}_b" for c in labels]].to_numpy()
    )
    if differ.any():
        rows = differ.any(axis=1)
        raise CompareError(
            f"{both} disagree on the session or true grades of {rows.sum()} image(s) "
            f"(e.g. {merged['name'][rows].iloc[0]}): not the same split"
        )
    return (
        merged["session_a"].to_numpy(),
        merged[[f"{c}_a" for c in TRUE_COLUMNS]].to_numpy(dtype=np.int64),
        merged[[f"{c}_a" for c in PREDICTED_COLUMNS]].to_numpy(dtype=np.int64),
        merged[[f"{c}_b" for c in PREDICTED_COLUMNS]].to_numpy(dtype=np.int64),
    )


def compare(a: Predictions, b: Predictions, resamples: int, seed: int) -> dict[str, Any]:
    """Both models' metrics and their paired differences B - A (JSON-ready; NaN as None).

    Returns:
        ``a``, ``b`` (the files), ``images``, ``sessions``, ``resamples``, ``seed``,
        ``level`` and ``metrics``: per key of ``DIFFERENCE_KEYS``, the value of ``a`` and
        ``b``, the ``difference``, its interval ``low`` .. ``high`` and ``p_value``.
    """
    sessions, grades, predicted_a, predicted_b = paired_grades(a, b)
    differences = paired_difference(
        sessions, grades, predicted_a, predicted_b, resamples, seed, LEVEL
    )
    scores = [
        metrics_from_confusions(session_confusions(sessions, grades, predicted).sum(axis=0))
        for predicted in (predicted_a, predicted_b)
    ]
    metrics = {
        key: {"a": float(scores[0][key]), "b": float(scores[1][key])} | asdict(difference)
        for key, difference in differences.items()
    }
    return {
        "a": str(a.source),
        "b": str(b.source),
        "images": len(grades),
        "sessions": len(np.unique(sessions)),
        "resamples": resamples,
        "seed": seed,
        "level": LEVEL,
        "metrics": {
            key: {name: None if math.isnan(v) else v for name, v in values.items()}
            for key, values in metrics.items()
        },
    }


def format_comparison(result: dict[str, Any]) -> str:
    """The comparison of :func:`compare` as a plain-text table."""
    percent = round(result["level"] * 100)
    lines = [
        f"A: {result['a']}",
        f"B: {result['b']}",
        f"{result['images']} images in {result['sessions']} sessions; paired session "
        f"bootstrap, {result['resamples']} resamples, seed {result['seed']}; "
        f"{percent} % percentile intervals, two-sided p-values.",
        "",
        f"{'metric':<40}{'A':>8}{'B':>8}{'B - A':>9}  {f'{percent} % CI':<18}{'p':>7}",
    ]
    for key, values in result["metrics"].items():
        interval = f"[{_number(values['low'], '+.3f')}, {_number(values['high'], '+.3f')}]"
        # p = 0: no resample reached a difference of 0; the least p above 0 is 2 / resamples.
        p_value = values["p_value"]
        p_text = f"<{2 / result['resamples']:.2g}" if p_value == 0 else _number(p_value, ".3f")
        lines.append(
            f"{key:<40}{_number(values['a'], '.3f'):>8}{_number(values['b'], '.3f'):>8}"
            f"{_number(values['difference'], '+.3f'):>9}  {interval:<18}"
            f"{p_text:>7}"
        )
    return "\n".join(lines)


def _number(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m scalp_ml.compare``."""
    parser = argparse.ArgumentParser(
        prog="python -m scalp_ml.compare",
        description="Compare two models' predictions on the same split with a paired "
        "session bootstrap (B - A).",
    )
    for name in ("a", "b"):
        parser.add_argument(
            name,
            type=Path,
            metavar=name.upper(),
            help="training run or evaluation directory (holding predictions_<split>.csv), or "
            "predictions CSV",
        )
    parser.add_argument("--split", default="test", help="split of a directory's predictions")
    parser.add_argument("--resamples", type=_positive, default=1000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    parser.add_argument("--out", type=Path, help="also write the numbers to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the comparison; returns the exit status (2: inputs that cannot be compared)."""
    command = build_parser()
    args = command.parse_args(argv)
    try:
        a, b = (load_predictions(path, args.split) for path in (args.a, args.b))
        result = compare(a, b, args.resamples, args.seed)
        if args.out is not None:
            atomic_write_text(args.out, json.dumps(result, indent=2))
    except (CompareError, OSError) as error:
        print(f"{command.prog}: error: {error}", file=sys.stderr)
        return 2
    print(format_comparison(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
