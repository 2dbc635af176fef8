"""Prediction entry: ``python -m scalp_ml.predict ckpt_path=<.ckpt|.onnx> inputs=<file|dir|glob>``.

Letterboxes like training, grades in batches, prints a table and writes ``predictions.csv``
(one row per image and indicator) and ``predictions.json``. ``explain=true`` also writes one
Grad-CAM grid per image. An unreadable image becomes an error row; the others are graded.
"""

from __future__ import annotations

import glob
import json
import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, Dataset

from scalp_ml.atomic import atomic_write_text
from scalp_ml.data.images import IMAGE_SUFFIXES, read_rgb
from scalp_ml.data.transforms import build_transform
from scalp_ml.inference.predictors import (
    Preprocessing,
    TorchPredictor,
    graded_batches,
    load_predictor,
)
from scalp_ml.labels import GRADES, GRADES_KOREAN, INDICATORS

log = logging.getLogger(__name__)


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
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        where = f"'{inputs}' is neither a file nor a folder and matches no files"
    if not files:
        raise FileNotFoundError(f"No images to grade: {where}")
    return files


class Photographs(Dataset):
    """Photographs to grade; one that cannot be read yields a blank image and its error."""

    def __init__(self, paths: list[Path], preprocessing: Preprocessing) -> None:
        self.paths = paths
        self.image_size = preprocessing.image_size
        self.transform = build_transform(self.image_size, preprocessing.mean, preprocessing.std)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        try:
            image, error = self.transform(image=read_rgb(path))["image"], ""
        except OSError as failure:
            image, error = torch.zeros(3, self.image_size, self.image_size), str(failure)
        return {"image": image, "path": str(path), "error": error}


def prediction_records(
    paths: list[str], errors: list[str], probabilities: np.ndarray
) -> list[dict]:
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


def records_table(records: list[dict]) -> pd.DataFrame:
    """Tidy table: one row per (image, indicator), or one row for an unreadable image."""
    rows = []
    for record in records:
        if record["error"]:
            rows.append({"file": record["file"], "error": record["error"]})
        for item in record["indicators"] or []:
            probabilities = {f"p_{grade}": value for grade, value in item["probabilities"].items()}
            fields = {key: value for key, value in item.items() if key != "probabilities"}
            rows.append({"file": record["file"], "error": ""} | fields | probabilities)
    return pd.DataFrame(rows)


def print_summary(records: list[dict]) -> None:
    """A terminal table: each image's six grades, or its error."""
    table = Table(title="scalp_ml predictions")
    table.add_column("file")
    for indicator in INDICATORS:
        table.add_column(f"{indicator.name}\n{indicator.korean}", justify="center")
    for record in records:
        name = Path(record["file"]).name
        if record["error"]:
            table.add_row(name, f"[red]{record['error']}", *[""] * (len(INDICATORS) - 1))
        else:
            table.add_row(
                name, *(f"{item['grade']} {item['grade_name']}" for item in record["indicators"])
            )
    Console().print(table)


def predict(cfg: DictConfig) -> list[dict]:
    """Grades every image of ``cfg.inputs`` and writes the predictions into ``cfg.out_dir``."""
    predictor = load_predictor(cfg.ckpt_path, cfg.device)
    if cfg.explain and not isinstance(predictor, TorchPredictor):
        raise ValueError("explain=true needs a checkpoint (.ckpt); ONNX files have no gradients")
    dataset = Photographs(find_images(cfg.inputs), predictor.preprocessing)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
    paths, errors, probabilities = [], [], []
    for batch, probs in graded_batches(predictor, loader):
        paths += batch["path"]
        errors += batch["error"]
        probabilities.append(probs)
    records = prediction_records(paths, errors, np.concatenate(probabilities))
    out_dir = Path(cfg.out_dir)
    atomic_write_text(
        out_dir / "predictions.json", json.dumps(records, ensure_ascii=False, indent=1)
    )
    csv = records_table(records).to_csv(index=False)
    atomic_write_text(out_dir / "predictions.csv", "\ufeff" + csv)  # BOM: Excel reads the Korean
    print_summary(records)
    for error in filter(None, errors):
        log.warning("Not graded: %s", error)
    if cfg.explain:
        write_explanations(predictor, dataset, records, out_dir / "explain")
    log.info("Predictions written to %s", out_dir)
    return records


def write_explanations(
    predictor: TorchPredictor, dataset: Photographs, records: list[dict], out_dir: Path
) -> None:
    """One Grad-CAM grid PNG per readable image."""
    from scalp_ml.evaluation.report import save_figure
    from scalp_ml.inference.grad_cam import explanation_figure, grad_cam_maps, unletterbox

    for index, record in enumerate(records):
        if record["error"]:
            continue
        photo = read_rgb(Path(record["file"]))
        image = dataset[index]["image"][None].to(predictor.device)
        probabilities = np.array(
            [list(item["probabilities"].values()) for item in record["indicators"]]
        )
        maps = grad_cam_maps(predictor.net, image, probabilities.argmax(axis=1))
        maps = np.stack([unletterbox(m, *photo.shape[:2]) for m in maps])
        figure = explanation_figure(photo, maps, probabilities, Path(record["file"]).name)
        save_figure(figure, out_dir / f"{Path(record['file']).stem}.png")


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Hydra entry."""
    predict(cfg)


if __name__ == "__main__":
    main()
