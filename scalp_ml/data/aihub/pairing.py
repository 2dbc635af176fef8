"""Index an AI Hub scalp download: pair every label with its image and record what is wrong.

The index is a manifest, one row per distinct image (where it is, the six grades, the capture
session it belongs to: one session is one person, so splits can keep it whole), plus a report
of what could not be used. Building it reads every label but decodes no image (only headers),
so it stays fast on the ~100k files of the full set. What to do with the problems is decided
afterwards by the ``on_*`` policies (:func:`usable_manifest`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal, TypeVar

import pandas as pd

from scalp_ml.data.aihub.label_file import MAX_LABEL_BYTES, Label, LabelError, parse_label
from scalp_ml.data.aihub.reader import Download, list_files, location_archive, location_name
from scalp_ml.data.images import IMAGE_SUFFIXES, BadImageError, probe
from scalp_ml.labels import INDICATOR_NAMES
from scalp_ml.progress import progress

log = logging.getLogger(__name__)

# PPPP_DEVICESERIAL_TIMESTAMPMS_N_RR, e.g. 0013_A2LEBJJDE00060O_1606386139601_3_TH
IMAGE_NAME = re.compile(
    r"^(?P<site>\d{4})_(?P<device>[0-9A-Z]+)_(?P<timestamp>\d+)_(?P<shot>\d+)_(?P<region>[A-Z]{2})$"
)
SUBSET = re.compile(r"training|validation", re.IGNORECASE)
TEXT_COLUMNS = (
    "image",
    "label",
    "name",
    "session",
    "site",
    "device",
    "region",
    "subset",
    "archive",
    "format",
    "mode",
    "label_conflict",
    "image_problem",
)
MANIFEST_COLUMNS = (*TEXT_COLUMNS, "width", "height", *INDICATOR_NAMES)
SHOWN_PROBLEMS = 20  # problems listed in an error message; the data report lists all
Item = TypeVar("Item")


@dataclass
class IndexReport:
    """What indexing found besides the usable images.

    Attributes:
        files: Files seen (archive members counted one by one).
        label_files: Label JSON files seen.
        image_files: Image files seen.
        duplicate_labels: Extra label files of an image that agree with its first (merged).
        duplicate_images: Extra copies of an image file in other folders (merged).
        bad_labels: One ``location: problem`` line per unusable label file.
        labels_without_image: Locations of labels whose image is nowhere in the download.
        images_without_label: Locations of images that no label names.
    """

    files: int = 0
    label_files: int = 0
    image_files: int = 0
    duplicate_labels: int = 0
    duplicate_images: int = 0
    bad_labels: list[str] = field(default_factory=list)
    labels_without_image: list[str] = field(default_factory=list)
    images_without_label: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain values for JSON."""
        return asdict(self)


@dataclass
class Index:
    """A download's manifest (every paired image, problems in its columns) and report."""

    manifest: pd.DataFrame
    report: IndexReport


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


def subset_of(location: str) -> str:
    """``Training`` or ``Validation`` from the first folder or archive that names one, or ``""``."""
    match = SUBSET.search(location)
    return match.group(0).capitalize() if match else ""


def build_index(root: str | Path, show_progress: bool = True) -> Index:
    """Pairs every label JSON below ``root`` (folders or zip archives) with its image.

    Labels and images pair by file stem wherever they sit. An image filed under several
    condition folders becomes one row; label copies that disagree are kept as one row with
    ``label_conflict`` set, an image whose header is not an image's gets ``image_problem``.

    Raises:
        FileNotFoundError: ``root`` does not exist, is empty, or holds no label files.
    """
    root = Path(root)
    download = Download(root)
    try:
        locations = list(download.locations(list_files(root)))
        report = IndexReport(files=len(locations))
        labels, images = _read_labels(download, locations, report, show_progress)
        if not labels and not report.bad_labels:
            raise FileNotFoundError(f"No label JSON files found under {root}")
        rows = [
            _row(download, copies, images[stem], report)
            for stem, copies in _shown(sorted(labels.items()), show_progress, "Checking images")
            if stem in images
        ]
    finally:
        download.close()
    if labels and not rows:
        example = next(iter(labels.values()))[0]
        raise FileNotFoundError(
            f"None of the {len(labels)} labels under {root} has its image, e.g. "
            f"{example.source} names {example.image_name}"
        )
    report.labels_without_image = [labels[stem][0].source for stem in labels if stem not in images]
    report.images_without_label = [images[stem][0][0] for stem in images if stem not in labels]
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    log.info(
        "Indexed %s: %d images, %d duplicate labels and %d duplicate image files merged, "
        "%d labels without image, %d images without label, %d unusable labels",
        root,
        len(manifest),
        report.duplicate_labels,
        report.duplicate_images,
        len(report.labels_without_image),
        len(report.images_without_label),
        len(report.bad_labels),
    )
    return Index(manifest, report)


def _read_labels(
    download: Download,
    locations: list[tuple[str, int]],
    report: IndexReport,
    show_progress: bool,
) -> tuple[dict[str, list[Label]], dict[str, list[tuple[str, int]]]]:
    """Parses every label; collects label copies and image files by image stem."""
    labels: dict[str, list[Label]] = {}
    images: dict[str, list[tuple[str, int]]] = {}
    for location, size in _shown(locations, show_progress, "Reading labels"):
        name = PurePosixPath(location_name(location))
        suffix = name.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            report.image_files += 1
            images.setdefault(name.stem, []).append((location, size))
        elif suffix == ".json":
            report.label_files += 1
            if size > MAX_LABEL_BYTES:  # never read into memory (a zip can hold a huge one)
                report.bad_labels.append(
                    f"{location}: {size:,} bytes, far larger than a label "
                    f"(at most {MAX_LABEL_BYTES:,}); not read"
                )
                continue
            try:
                label = parse_label(download.read(location), location)
            except (LabelError, OSError) as error:
                report.bad_labels.append(str(error))
                continue
            labels.setdefault(PurePosixPath(label.image_name).stem, []).append(label)
    return labels, images


def _row(
    download: Download, copies: list[Label], files: list[tuple[str, int]], report: IndexReport
) -> dict:
    """One manifest row: the first readable copy of the image and its label, problems noted."""
    report.duplicate_images += len(files) - 1
    conflict = ""
    if len({label.grades for label in copies}) > 1:
        conflict = "conflicting labels: " + "; ".join(
            f"{label.source} says {label.grades}" for label in copies
        )
    else:
        report.duplicate_labels += len(copies) - 1
    location, header, problem = _first_image(download, files)
    name = location_name(location)
    return {
        "image": location,
        "label": copies[0].source,
        "name": name,
        **session_of(PurePosixPath(name).stem),
        "subset": subset_of(location),
        "archive": location_archive(location),
        **header,
        "label_conflict": conflict,
        "image_problem": problem,
        **dict(zip(INDICATOR_NAMES, copies[0].grades, strict=True)),
    }


def _first_image(download: Download, files: list[tuple[str, int]]) -> tuple[str, dict, str]:
    """Location, header and problem of the first copy whose header reads; else the first's."""
    problems = []
    for location, size in files:
        try:
            with download.open(location) as stream:
                return location, asdict(probe(stream, size, location)), ""
        except OSError as error:  # BadImageError, or a file that cannot be opened
            problems.append(str(error))
    return files[0][0], {"width": 0, "height": 0, "format": "", "mode": ""}, problems[0]


def _shown(items: Iterable[Item], shown: bool, description: str) -> Iterator[Item]:
    items = list(items)
    return progress(items, description, transient=True) if shown else iter(items)


def usable_manifest(
    index: Index,
    on_conflict: Literal["error", "drop"] = "error",
    on_bad_image: Literal["error", "skip"] = "error",
    on_bad_label: Literal["error", "skip"] = "error",
) -> pd.DataFrame:
    """The manifest rows a run may use, after applying the policies to the index's problems.

    Raises:
        LabelError: Unusable labels with ``on_bad_label=error``, or conflicting duplicates
            with ``on_conflict=error``; the message lists the files and problems.
        BadImageError: Images that are not images with ``on_bad_image=error``.
        ValueError: A policy is not one of its allowed values.
    """
    _check_policy("on_conflict", on_conflict, ("error", "drop"))
    _check_policy("on_bad_image", on_bad_image, ("error", "skip"))
    _check_policy("on_bad_label", on_bad_label, ("error", "skip"))
    manifest, report = index.manifest, index.report
    if report.bad_labels:
        _apply(on_bad_label, LabelError, "unusable label files", "on_bad_label", report.bad_labels)
    conflicts = manifest["label_conflict"] != ""
    if conflicts.any():
        listing = (manifest["name"] + ": " + manifest["label_conflict"])[conflicts].tolist()
        _apply(on_conflict, LabelError, "images with conflicting labels", "on_conflict", listing)
    bad_images = manifest["image_problem"] != ""
    if bad_images.any():
        listing = manifest["image_problem"][bad_images].tolist()
        _apply(on_bad_image, BadImageError, "unusable images", "on_bad_image", listing)
    for what, items in (
        ("labels without image", report.labels_without_image),
        ("images without label", report.images_without_label),
    ):
        if items:
            log.warning("Skipped %d %s, e.g. %s", len(items), what, items[0])
    return manifest[~(conflicts | bad_images)].reset_index(drop=True)


def _check_policy(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"data.{key} must be one of {'|'.join(allowed)}, got {value!r}")


def _apply(policy: str, error: type[Exception], what: str, key: str, listing: list[str]) -> None:
    """Raises ``error`` listing the problems when ``policy`` is ``error``; else logs them."""
    shown = "\n  ".join(listing[:SHOWN_PROBLEMS])
    more = len(listing) - SHOWN_PROBLEMS
    if more > 0:
        shown += f"\n  ... and {more} more (all of them: python -m scalp_ml.data.report)"
    if policy == "error":
        leave_out = "drop" if key == "on_conflict" else "skip"
        raise error(
            f"{len(listing)} {what} (data.{key}=error; set data.{key}={leave_out} to leave "
            f"them out):\n  {shown}"
        )
    log.warning("Leaving out %d %s (data.%s=%s):\n  %s", len(listing), what, key, policy, shown)
