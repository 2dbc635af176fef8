"""Data report: ``python -m scalp_ml.data.report data.root=/path/to/download``.

Writes ``data_report.md`` (the study's Table 1 for the whole set and each split, duplicates,
conflicts and every other problem found, images and sessions per split, a cross-split leakage
check), ``grades.png`` (share of each grade per split, one panel per indicator) and
``problems.csv`` (every problem, one per line). When the ``on_*`` policies refuse the data,
the report is still written, with the refusal, and without the split sections.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig

import scalp_ml.config
from scalp_ml.atomic import atomic_write_text, save_figure
from scalp_ml.cli import CONF_DIR, run_command
from scalp_ml.data.aihub.index import default_manifest_path, load_or_build_index
from scalp_ml.data.aihub.label_file import LabelError
from scalp_ml.data.aihub.pairing import Index, usable_manifest
from scalp_ml.data.images import BadImageError
from scalp_ml.data.splits import SPLITS, file_sha256, load_or_create_split, split_file_for
from scalp_ml.labels import GRADES, INDICATOR_NAMES, NUM_GRADES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

SHOWN_LINES = 50  # problems of one kind listed in the Markdown; problems.csv has all
PROBLEM_KINDS = (
    "conflicting labels",
    "unusable label",
    "unusable image",
    "label without image",
    "image without label",
)


def grade_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """The study's Table 1: images per grade (columns 0-3) of each indicator (rows)."""
    counts = {
        name: np.bincount(manifest[name].to_numpy(dtype=int), minlength=NUM_GRADES)
        for name in INDICATOR_NAMES
    }
    return pd.DataFrame.from_dict(counts, orient="index", columns=list(range(NUM_GRADES)))


def leakage(manifest: pd.DataFrame, splits: Mapping[str, list[str]]) -> pd.DataFrame:
    """Images and capture sessions that two splits share, one row per pair of splits."""
    session_of = manifest.set_index("name")["session"]
    rows = []
    for first, second in itertools.combinations(SPLITS, 2):
        images = set(splits[first]) & set(splits[second])
        sessions = set(session_of[splits[first]]) & set(session_of[splits[second]])
        rows.append(
            {"splits": f"{first} / {second}", "images": len(images), "sessions": len(sessions)}
        )
    return pd.DataFrame(rows)


def problems_table(index: Index) -> pd.DataFrame:
    """Every problem the index found: ``kind``, ``location`` and ``problem``."""
    report, manifest = index.report, index.manifest
    rows = [("unusable label", *line.split(": ", 1)) for line in report.bad_labels]
    rows += [("label without image", location, "") for location in report.labels_without_image]
    rows += [("image without label", location, "") for location in report.images_without_label]
    for kind, column, where in (
        ("conflicting labels", "label_conflict", "name"),
        ("unusable image", "image_problem", "image"),
    ):
        found = manifest[manifest[column] != ""]
        for location, text in zip(found[where], found[column], strict=True):
            rows.append((kind, location, text.removeprefix(f"{location}: ")))
    return pd.DataFrame(rows, columns=["kind", "location", "problem"])


def write_data_report(out_dir: Path, data: Mapping[str, Any], show_progress: bool = True) -> Path:
    """Indexes ``data.root`` (or reuses its index) and writes the report into ``out_dir``.

    Args:
        out_dir: Folder of the report.
        data: The ``data`` config (root, manifest file, policies, split).
        show_progress: Show progress bars.

    Returns:
        The Markdown report's path.
    """
    root = Path(data["root"])
    manifest_file = data.get("manifest_file") or default_manifest_path(root)
    index = load_or_build_index(
        root, manifest_file, data.get("verify_images", False), show_progress
    )
    problems = problems_table(index)
    atomic_write_text(out_dir / "problems.csv", problems.to_csv(index=False))
    lines = [
        f"# Data report: {root}",
        "",
        f"Index: `{manifest_file}`",
        "",
        *_index_section(index, problems),
    ]
    try:
        usable = usable_manifest(
            index,
            data.get("on_conflict", "error"),
            data.get("on_bad_image", "error"),
            data.get("on_bad_label", "error"),
        )
    except (LabelError, BadImageError) as refusal:
        lines += ["## Refused by the data policies", "", "```", str(refusal), "```"]
    else:
        split_file = split_file_for(root, data["split"])
        split = data["split"]
        strategy = split.get("strategy", "image")
        splits = load_or_create_split(usable, split_file, split["ratios"], split["seed"], strategy)
        lines += _split_sections(usable, splits, strategy, split_file)
        save_figure(_grades_figure(usable, splits), out_dir / "grades.png")
        lines += ["", "![grade shares per split](grades.png)"]
    path = atomic_write_text(out_dir / "data_report.md", "\n".join(lines) + "\n")
    log.info("Data report written to %s", path)
    return path


def _index_section(index: Index, problems: pd.DataFrame) -> list[str]:
    report, manifest = index.report, index.manifest
    counts = problems["kind"].value_counts()
    summary = {
        "files seen (archive members one by one)": report.files,
        "label files": report.label_files,
        "image files": report.image_files,
        "distinct images with a label": len(manifest),
        "capture sessions": manifest["session"].nunique(),
        "duplicate labels merged (identical grades)": report.duplicate_labels,
        "duplicate image files merged": report.duplicate_images,
        **{kind: int(counts.get(kind, 0)) for kind in PROBLEM_KINDS},
    }
    lines = ["## Index", "", "| | count |", "|---|---|"]
    lines += [f"| {what} | {count} |" for what, count in summary.items()]
    shapes = manifest.groupby(["format", "mode", "width", "height"]).size()
    lines += ["", "Image formats and sizes:", "", "| format | mode | width | height | images |"]
    lines += ["|---|---|---|---|---|"]
    lines += [
        f"| {f or '-'} | {m or '-'} | {w} | {h} | {n} |" for (f, m, w, h), n in shapes.items()
    ]
    for kind in PROBLEM_KINDS:
        found = problems[problems["kind"] == kind]
        if found.empty:
            continue
        lines += ["", f"### {kind} ({len(found)})", ""]
        lines += [
            f"- `{row.location}` {row.problem}".rstrip()
            for row in found.head(SHOWN_LINES).itertuples()
        ]
        if len(found) > SHOWN_LINES:
            lines.append(f"- ... {len(found) - SHOWN_LINES} more in `problems.csv`")
    return [*lines, ""]


def _split_sections(
    manifest: pd.DataFrame, splits: Mapping[str, list[str]], strategy: str, split_file: Path
) -> list[str]:
    by_name = manifest.set_index("name")
    lines = [
        "## Split",
        "",
        f"Strategy `{strategy}`, file `{split_file}` (SHA-256 `{file_sha256(split_file)}`).",
        "",
        "| split | images | sessions |",
        "|---|---|---|",
    ]
    for split in SPLITS:
        members = by_name.loc[splits[split]]
        lines.append(f"| {split} | {len(members)} | {members['session'].nunique()} |")
    shared = leakage(manifest, splits)
    verdict = "none" if not shared[["images", "sessions"]].to_numpy().any() else "**LEAK**"
    lines += ["", f"### Cross-split leakage: {verdict}", "", "| splits | shared images |"]
    lines[-1] += " shared sessions |"
    lines.append("|---|---|---|")
    lines += [f"| {r.splits} | {r.images} | {r.sessions} |" for r in shared.itertuples()]
    sets = {"all": manifest, **{split: by_name.loc[splits[split]] for split in SPLITS}}
    for name, members in sets.items():
        lines += ["", f"### Table 1: {name} ({len(members)} images)", "", _table_markdown(members)]
    return lines


def _table_markdown(manifest: pd.DataFrame) -> str:
    table = grade_table(manifest)
    header = " | ".join(f"{grade} {GRADES[grade]}" for grade in table.columns)
    lines = [f"| indicator | {header} |", "|---" * (1 + NUM_GRADES) + "|"]
    total = max(len(manifest), 1)
    for name, counts in table.iterrows():
        cells = " | ".join(f"{count} ({100 * count / total:.1f} %)" for count in counts)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def _grades_figure(manifest: pd.DataFrame, splits: Mapping[str, list[str]]) -> Figure:
    """Share of each grade per split, one panel per indicator."""
    import matplotlib.pyplot as plt  # slow import: only when the report is written

    by_name = manifest.set_index("name")
    sets = {"all": by_name, **{split: by_name.loc[splits[split]] for split in SPLITS}}
    figure, axes = plt.subplots(2, 3, figsize=(14, 7.5), constrained_layout=True)
    width = 0.8 / len(sets)
    for axis, indicator in zip(axes.flat, INDICATOR_NAMES, strict=True):
        for offset, (name, members) in enumerate(sets.items()):
            shares = grade_table(members).loc[indicator] / max(len(members), 1) * 100
            positions = np.arange(NUM_GRADES) + (offset - (len(sets) - 1) / 2) * width
            axis.bar(positions, shares, width, label=f"{name} ({len(members)})")
        axis.set(
            title=indicator, xticks=range(NUM_GRADES), xticklabels=GRADES, ylabel="% of images"
        )
    axes.flat[0].legend(fontsize=8)
    figure.suptitle("Grade shares per split (the study's Table 1 as bars)")
    return figure


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="data_report")
def main(cfg: DictConfig) -> None:
    """Command-line entry: ``python -m scalp_ml.data.report data.root=...``."""
    write_data_report(Path(cfg.out_dir), scalp_ml.config.plain(cfg.data))


def cli() -> None:
    """Console script (and ``python -m``): the command, or its help with ``--help``."""
    run_command(main, "data_report")


if __name__ == "__main__":
    cli()
