"""What ``python -m scalp_ml.predict`` does: grade image files, write tables, explain grades.

Images are prepared by :mod:`scalp_ml.data.dataset` like training's and graded by a predictor
(:mod:`scalp_ml.inference.predictors`); with an ONNX file neither torch nor Lightning is
imported. ``predictions.csv`` has one row per image and indicator, with fixed columns: an
unreadable image is one row with its error and empty grade cells.
"""

from __future__ import annotations

import glob
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from scalp_ml.atomic import atomic_write_text
from scalp_ml.data.dataset import Photographs, batches
from scalp_ml.data.images import IMAGE_SUFFIXES, read_rgb
from scalp_ml.extras import require
from scalp_ml.inference.predictors import CheckpointPredictor, load_predictor
from scalp_ml.labels import GRADES, GRADES_KOREAN, INDICATORS
from scalp_ml.progress import progress

log = logging.getLogger(__name__)

COLUMNS = [
    "file",
    "error",
    "name",
    "korean",
    "grade",
    "grade_name",
    "grade_korean",
    *(f"p_{grade}" for grade in GRADES),
]
SHOWN_ROWS = 20  # images listed in the terminal; every one is in the files


class NothingGradedError(RuntimeError):
    """Not one of the images could be graded."""


def find_images(inputs: str) -> list[Path]:
    """The image files named by a file, a folder (searched recursively) or a glob pattern.

    Raises:
        FileNotFoundError: Nothing matches (the message repeats ``inputs``).
    """
    path = Path(inputs).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        where = f"folder {path} holds no {'/'.join(sorted(IMAGE_SUFFIXES))} files"
    else:
        pattern = literal_glob(path)
        files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        where = (
            f"'{inputs}' is neither a file nor a folder and, as a glob pattern, matches no files"
        )
        if "[" in inputs:
            where += " (in a pattern, [...] matches one of the characters inside: [[] is a '[')"
    if not files:
        raise FileNotFoundError(f"No images to grade: {where}")
    return files


def literal_glob(path: Path) -> str:
    """``path`` as a glob pattern whose longest existing leading folder is taken literally.

    ``photos/[2024] visit/*.jpg`` then matches the JPEGs of the folder ``[2024] visit``, where
    plain ``glob`` would look in folders named ``2 visit``, ``0 visit`` or ``4 visit``.
    """
    folder = next((parent for parent in path.parents if parent.is_dir()), Path())
    return str(Path(glob.escape(str(folder))) / path.relative_to(folder))


def prediction_records(
    paths: list[str], errors: list[str], probabilities: np.ndarray
) -> list[dict[str, Any]]:
    """One JSON-ready record per image: its six grades with names and probabilities."""
    records = []
    for path, error, probs in zip(paths, errors, probabilities, strict=True):
        if error:
            records.append({"file": path, "error": error, "indicators": None})
            continue
        indicators = []
        for indicator, p in zip(INDICATORS, probs, strict=True):
            grade = int(p.argmax())
            indicators.append(
                {
                    "name": indicator.name,
                    "korean": indicator.korean,
                    "grade": grade,
                    "grade_name": GRADES[grade],
                    "grade_korean": GRADES_KOREAN[grade],
                    "probabilities": dict(zip(GRADES, map(float, p), strict=True)),
                }
            )
        records.append({"file": path, "error": None, "indicators": indicators})
    return records


def records_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (image, indicator), or one row for an unreadable image; fixed columns."""
    rows = []
    for record in records:
        if record["error"]:
            rows.append({"file": record["file"], "error": record["error"]})
        for item in record["indicators"] or []:
            probabilities = {f"p_{grade}": value for grade, value in item["probabilities"].items()}
            fields = {key: value for key, value in item.items() if key != "probabilities"}
            rows.append({"file": record["file"], "error": ""} | fields | probabilities)
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.astype({"grade": "Int64"})  # integers, with empty cells for error rows


def print_summary(records: list[dict[str, Any]], out_dir: Path) -> None:
    """A terminal table of the first images' six grades (or errors); the rest are counted."""
    table = Table(title="scalp_ml predictions")
    table.add_column("file")
    for indicator in INDICATORS:
        table.add_column(f"{indicator.name}\n{indicator.korean}", justify="center")
    for record in records[:SHOWN_ROWS]:
        name = Path(record["file"]).name
        if record["error"]:
            table.add_row(name, f"[red]{record['error']}", *[""] * (len(INDICATORS) - 1))
        else:
            table.add_row(
                name, *(f"{item['grade']} {item['grade_name']}" for item in record["indicators"])
            )
    if len(records) > SHOWN_ROWS:
        table.caption = f"... and {len(records) - SHOWN_ROWS} more: see {out_dir}/predictions.csv"
    Console().print(table)


def predict(
    ckpt_path: str,
    inputs: str,
    out_dir: Path,
    explain: bool = False,
    device: str = "auto",
    batch_size: int = 16,
    threads: int = 2,
    tta: str | None = None,
) -> list[dict[str, Any]]:
    """Grades every image of ``inputs`` and writes the predictions into ``out_dir``.

    Writes ``predictions.csv`` (UTF-8 with BOM, so Excel shows the Korean) and
    ``predictions.json``; with ``explain``, one Grad-CAM figure per image under ``explain/``
    at the image's path relative to ``inputs``. ``tta`` replaces a checkpoint's test-time
    augmentation (``None``: as trained; an ONNX file has its own).

    Raises:
        NothingGradedError: No image could be read (after the files are written).
        MissingExtraError: ``explain`` without grad-cam installed (scalp_ml[explain]).
    """
    if explain:  # before any grading
        require("pytorch_grad_cam", "explain", "explain=true (Grad-CAM figures)")
    predictor = load_predictor(ckpt_path, device, tta)
    if explain and not isinstance(predictor, CheckpointPredictor):
        raise ValueError("explain=true needs a checkpoint (.ckpt); ONNX files have no gradients")
    dataset = Photographs(find_images(inputs), predictor.image_size)
    paths, errors, probabilities = [], [], []
    for batch in progress(
        batches(dataset, batch_size, threads),
        f"Grading {len(dataset)} images",
        total=-(-len(dataset) // batch_size),
    ):
        paths += batch["path"]
        errors += batch["error"]
        probabilities.append(predictor(batch["image"]))
    records = prediction_records(paths, errors, np.concatenate(probabilities))
    atomic_write_text(
        out_dir / "predictions.json", json.dumps(records, ensure_ascii=False, indent=1)
    )
    csv = records_table(records).to_csv(index=False)
    atomic_write_text(out_dir / "predictions.csv", "\ufeff" + csv)
    print_summary(records, out_dir)
    for error in filter(None, errors):
        log.warning("Not graded: %s", error)
    if all(errors):
        raise NothingGradedError(f"None of the {len(errors)} images could be graded (see above)")
    if explain:
        write_explanations(predictor, dataset, records, inputs, out_dir / "explain")
    log.info("Predictions written to %s", out_dir)
    return records


def search_root(inputs: str) -> Path:
    """The folder ``inputs`` searches: the folder itself, a file's folder, a glob's fixed part."""
    path = Path(inputs).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    fixed = []
    for part in path.parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path()


def explanation_path(image: Path, inputs: str, out_dir: Path) -> Path:
    """Where an image's figure goes: its path below the searched folder, as ``.jpg``.

    Images in different sub-folders with one file name get different figures.
    """
    relative = image.resolve().relative_to(search_root(inputs).resolve())
    return (out_dir / relative).with_suffix(".jpg")


def write_explanations(
    predictor: CheckpointPredictor,
    dataset: Photographs,
    records: list[dict[str, Any]],
    inputs: str,
    out_dir: Path,
    batch_size: int = 8,
) -> None:
    """One Grad-CAM figure per readable image (batched Grad-CAM, with a progress bar)."""
    import torch

    from scalp_ml.atomic import save_figure
    from scalp_ml.data.images import unletterbox
    from scalp_ml.inference.grad_cam import explanation_figure, grad_cam_maps

    readable = [index for index, record in enumerate(records) if not record["error"]]
    starts = range(0, len(readable), batch_size)
    for start in progress(starts, f"Grad-CAM of {len(readable)} images"):
        chosen = readable[start : start + batch_size]
        images = torch.from_numpy(np.stack([dataset[index]["image"] for index in chosen]))
        probabilities = np.stack([_probabilities(records[index]) for index in chosen])
        grades = probabilities.argmax(axis=-1)
        maps = grad_cam_maps(predictor.module.net, images.to(predictor.device), grades)
        for index, image_maps, probs in zip(chosen, maps, probabilities, strict=True):
            path = Path(records[index]["file"])
            photo = read_rgb(path)
            restored = np.stack([unletterbox(m, *photo.shape[:2]) for m in image_maps])
            figure = explanation_figure(photo, restored, probs, str(path))
            save_figure(figure, explanation_path(path, inputs, out_dir), dpi=80)


def _probabilities(record: dict[str, Any]) -> np.ndarray:
    return np.array([list(item["probabilities"].values()) for item in record["indicators"]])
