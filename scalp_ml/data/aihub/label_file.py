"""Parse one AI Hub label JSON: the image's file name and its six grades."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from scalp_ml.data.aihub.reader import location_name
from scalp_ml.labels import INDICATORS, NUM_GRADES

# Label files are UTF-8 (with or without a byte-order mark); older Windows tools wrote CP949.
ENCODINGS = ("utf-8-sig", "cp949")
MAX_LABEL_BYTES = 1_000_000  # a label is about 1 kB; anything this large is not one (nor read)


class LabelError(ValueError):
    """A label file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Label:
    """One parsed label file.

    Attributes:
        image_name: File name of the labelled image (no folder).
        grades: The six grades, in the order of :data:`scalp_ml.labels.INDICATORS`.
        source: Where the label file is (its location in the download).
    """

    image_name: str
    grades: tuple[int, ...]
    source: str


def parse_label(data: bytes, source: str) -> Label:
    """Parses the bytes of one label JSON.

    Grades may be ints or numeric strings. The image's file name comes from
    ``image_file_name`` and falls back to the label file's own stem + ``.jpg``.

    Args:
        data: The file's bytes (UTF-8, UTF-8 with BOM, or CP949).
        source: The file's location, used in error messages and kept in the label.

    Raises:
        LabelError: The file is neither UTF-8 nor CP949 text, not a JSON object, lacks a
            ``value_k`` key, or holds a grade that is not an integer from 0 to 3.
    """
    text = _decode(data, source)
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        raise LabelError(f"{source}: not valid JSON ({error})") from error
    except RecursionError as error:
        raise LabelError(f"{source}: JSON nested too deeply to be a label") from error
    if not isinstance(content, dict):
        raise LabelError(f"{source}: expected a JSON object, found {type(content).__name__}")
    grades = tuple(_grade(content, indicator.key, source) for indicator in INDICATORS)
    own_stem = PurePosixPath(location_name(source)).stem
    image_name = str(content.get("image_file_name") or f"{own_stem}.jpg")
    return Label(PurePosixPath(image_name.replace("\\", "/")).name, grades, source)


def _decode(data: bytes, source: str) -> str:
    for encoding in ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise LabelError(f"{source}: not text in UTF-8 or CP949 (cannot decode its bytes)")


def _grade(content: dict, key: str, source: str) -> int:
    if key not in content:
        raise LabelError(f"{source}: missing key '{key}'")
    value = content[key]
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"-?[0-9]+", text):  # ASCII digits only
        raise LabelError(f"{source}: '{key}' is {value!r}, not an integer grade 0-{NUM_GRADES - 1}")
    grade = int(text)
    if not 0 <= grade < NUM_GRADES:
        raise LabelError(f"{source}: '{key}' is {grade}, outside 0-{NUM_GRADES - 1}")
    return grade
