"""Read an AI Hub scalp download (images + one JSON label per image) into a manifest.

A manifest is a table with one row per distinct image: where it is, the six grades and the
capture session it belongs to (one session is one person, so splits can keep it whole).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scalp_ml.labels import INDICATOR_NAMES, INDICATORS, NUM_GRADES

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
# PPPP_DEVICESERIAL_TIMESTAMPMS_N_RR, e.g. 0013_A2LEBJJDE00060O_1606386139601_3_TH
IMAGE_NAME = re.compile(
    r"^(?P<site>\d{4})_(?P<device>[0-9A-Z]+)_(?P<timestamp>\d+)_(?P<shot>\d+)_(?P<region>[A-Z]{2})$"
)
MANIFEST_COLUMNS = ("image", "name", "session", "site", "device", "region", *INDICATOR_NAMES)


class LabelError(ValueError):
    """A label file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Label:
    """One parsed label file."""

    image_name: str
    grades: tuple[int, ...]
    source: Path


def read_label(path: Path) -> Label:
    """Parses one AI Hub label JSON.

    Grades may be ints or numeric strings; a UTF-8 byte-order mark is tolerated. The image's
    file name comes from ``image_file_name`` and falls back to the JSON's own stem + ``.jpg``.

    Raises:
        LabelError: The file is not JSON, lacks a ``value_k`` key, or holds a grade that is
            not an integer from 0 to 3.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LabelError(f"{path}: not a UTF-8 JSON label file ({error})") from error
    if not isinstance(data, dict):
        raise LabelError(f"{path}: expected a JSON object, found {type(data).__name__}")
    grades = tuple(_grade(data, indicator.key, path) for indicator in INDICATORS)
    image_name = str(data.get("image_file_name") or f"{path.stem}.jpg")
    return Label(Path(image_name).name, grades, path)


def _grade(data: dict, key: str, path: Path) -> int:
    if key not in data:
        raise LabelError(f"{path}: missing key '{key}'")
    value = data[key]
    text = str(value).strip()
    if isinstance(value, bool) or not text.lstrip("-").isdigit():
        raise LabelError(f"{path}: '{key}' is {value!r}, not an integer grade 0-{NUM_GRADES - 1}")
    grade = int(text)
    if not 0 <= grade < NUM_GRADES:
        raise LabelError(f"{path}: '{key}' is {grade}, outside 0-{NUM_GRADES - 1}")
    return grade


def session_of(stem: str) -> dict[str, str]:
    """Site, device, region and session id parsed from an image name (without suffix).

    A name that does not follow the AI Hub pattern becomes a session of its own.
    """
    match = IMAGE_NAME.match(stem)
    if match is None:
        return {"session": stem, "site": "", "device": "", "region": ""}
    parts = match.groupdict()
    session = f"{parts['site']}_{parts['device']}_{parts['timestamp']}"
    return {
        "session": session,
        "site": parts["site"],
        "device": parts["device"],
        "region": parts["region"],
    }


def dataset_files(root: Path) -> Iterator[Path]:
    """Every file under ``root`` in sorted order, skipping hidden files and folders.

    Hidden folders hold tool state such as this project's ``.scalp_ml/`` (splits) or
    ``.ipynb_checkpoints``, never data.
    """
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def build_manifest(root: str | Path) -> pd.DataFrame:
    """Pairs every label JSON under ``root`` with its image and returns the manifest.

    The same image filed under several condition folders becomes one row. Labels whose image
    is missing are skipped and counted in the log.

    Raises:
        FileNotFoundError: ``root`` does not exist or holds no label files.
        LabelError: A label file is unusable, or one image has conflicting labels.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Data root {root} does not exist or is not a folder")
    images: dict[str, Path] = {}
    labels: dict[str, Label] = {}
    duplicates = 0
    for path in dataset_files(root):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            images.setdefault(path.name, path)
        elif path.suffix.lower() == ".json":
            label = read_label(path)
            earlier = labels.setdefault(label.image_name, label)
            if earlier is not label:
                if earlier.grades != label.grades:
                    raise LabelError(
                        f"{label.image_name} has conflicting labels: {earlier.source} says "
                        f"{earlier.grades}, {label.source} says {label.grades}"
                    )
                duplicates += 1
    if not labels:
        raise FileNotFoundError(f"No label JSON files found under {root}")
    rows = []
    for name, label in sorted(labels.items()):
        image = images.get(name)
        if image is None:
            continue
        stem = Path(name).stem
        rows.append(
            {"image": image.relative_to(root).as_posix(), "name": name, **session_of(stem)}
            | dict(zip(INDICATOR_NAMES, label.grades, strict=True))
        )
    missing = len(labels) - len(rows)
    log.info(
        "Manifest of %s: %d images, %d duplicate labels merged, %d labels without image skipped",
        root,
        len(rows),
        duplicates,
        missing,
    )
    if not rows:
        raise FileNotFoundError(f"None of the {len(labels)} labels under {root} has its image")
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
