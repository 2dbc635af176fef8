"""The evaluation report: Table 2 with intervals and collapse flags, detail, figures, JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import torch

from scalp_ml.atomic import atomic_write_text, save_figure
from scalp_ml.evaluation.bootstrap import Interval
from scalp_ml.evaluation.evidence import Evidence
from scalp_ml.evaluation.metrics import SUMMARY_KEYS
from scalp_ml.evaluation.offsets import OffsetsComparison
from scalp_ml.labels import GRADES, INDICATOR_NAMES
from scalp_ml.reference import MACRO_F1, OVERALL_MACRO_F1, TEST_HAMMING_ACCURACY

Results = Mapping[str, Mapping[str, torch.Tensor]]


def metrics_json(results: Results) -> dict[str, dict[str, Any]]:
    """Plain numbers per stage: scalars as floats, confusion matrices as nested lists."""
    return {
        stage: {key: value.tolist() for key, value in values.items()}
        for stage, values in results.items()
    }


def table2_markdown(results: Results, baseline: Results, evidence: Evidence) -> str:
    """Per-indicator macro-F1 beside the study's and the majority baseline's (Table 2 layout).

    Our numbers carry their intervals; the last column flags collapsed heads.
    """
    stages = [stage for stage in ("val", "test") if stage in results]
    columns = [f"{stage} {who}" for stage in stages for who in ("(ours)", "(study)", "(majority)")]
    columns.append("flags")
    lines = ["| indicator | " + " | ".join(columns) + " |", "|---" * (1 + len(columns)) + "|"]
    for name in (*INDICATOR_NAMES, "overall"):
        key = "macro_f1" if name == "overall" else f"macro_f1/{name}"
        cells = []
        for stage in stages:
            study = OVERALL_MACRO_F1[stage] if name == "overall" else MACRO_F1[stage][name]
            ours = _with_interval(results[stage][key], evidence.intervals[stage].get(key))
            cells += [ours, f"{study:.3f}", _number(baseline[stage][key])]
        flags = [
            f"⚠ collapsed ({stage}): {evidence.collapsed[stage][name]}"
            for stage in results
            if name in evidence.collapsed[stage]
        ]
        cells.append("; ".join(flags))
        label = f"**{name}**" if name == "overall" else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def legend_markdown(evidence: Evidence) -> str:
    """What the brackets and the collapse flags mean."""
    settings = evidence.settings
    return (
        f"Brackets: {settings.level:.0%} confidence interval, percentile bootstrap over capture "
        f"sessions ({settings.resamples} resamples, seed {settings.seed}). "
        "⚠ collapsed: the head predicts one grade for every image, or its macro-F1 is within "
        f"{settings.collapse_margin} of (or below) the majority-grade baseline's."
    )


def summary_markdown(results: Results, baseline: Results, evidence: Evidence) -> str:
    """Overall metrics per stage (with their intervals), beside the majority baseline's."""
    stages = list(results)
    columns = [f"{stage} {who}" for stage in stages for who in ("(ours)", "(majority)")]
    lines = ["| metric | " + " | ".join(columns) + " |", "|---" * (1 + len(columns)) + "|"]
    for key in SUMMARY_KEYS:
        cells = []
        for stage in stages:
            ours = _with_interval(results[stage][key], evidence.intervals[stage].get(key))
            cells += [ours, _number(baseline[stage][key])]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def detail_markdown(values: Mapping[str, torch.Tensor]) -> str:
    """Per indicator: kappa, MAE, within-one accuracy and per-grade precision/recall/F1/support."""
    lines = [
        "| indicator | grade | precision | recall | F1 | support | QWK | MAE | within one |",
        "|---" * 9 + "|",
    ]
    for name in INDICATOR_NAMES:
        for grade, grade_name in enumerate(GRADES):
            per_grade = [values[f"{key}/{name}/{grade}"] for key in ("precision", "recall", "f1")]
            support = int(values[f"support/{name}/{grade}"])
            ordinal = ["", "", ""]
            if grade == 0:
                ordinal = [_number(values[f"{key}/{name}"]) for key in ("qwk", "mae", "within_one")]
            cells = [name if grade == 0 else "", f"{grade} {grade_name}"]
            cells += [_number(value) for value in per_grade] + [str(support), *ordinal]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value: torch.Tensor | float) -> str:
    return f"{float(value):.3f}"


def _with_interval(value: torch.Tensor | float, interval: Interval | None) -> str:
    """``0.523 [0.48, 0.56]``: a value and its interval (the value alone without one)."""
    return _number(value) if interval is None else f"{_number(value)} {_brackets(interval)}"


def _brackets(interval: Interval) -> str:
    low, high = ("n/a" if math.isnan(v) else f"{v:.2f}" for v in (interval.low, interval.high))
    return f"[{low}, {high}]"


def confusion_figure(results: Mapping[str, torch.Tensor], title: str) -> plt.Figure:
    """2x3 grid of row-normalised 4x4 confusion matrices (rows: true grade)."""
    figure, axes = plt.subplots(2, 3, figsize=(13, 8.5), constrained_layout=True)
    for axis, name in zip(axes.flat, INDICATOR_NAMES, strict=True):
        counts = results[f"confusion/{name}"].double()
        rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
        axis.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
        for (row, column), rate in zip(
            torch.cartesian_prod(*[torch.arange(4)] * 2), rates.flatten(), strict=True
        ):
            color = "white" if rate > 0.5 else "black"
            text = f"{rate:.2f}\n({int(counts[row, column])})"
            axis.text(column, row, text, ha="center", va="center", color=color, fontsize=8)
        axis.set(
            title=f"{name} (macro-F1 {float(results[f'macro_f1/{name}']):.3f})",
            xticks=range(4),
            yticks=range(4),
            xticklabels=GRADES,
            yticklabels=GRADES,
            xlabel="predicted",
            ylabel="true",
        )
    figure.suptitle(title)
    return figure


def learning_curves_figure(metrics_csv: Path) -> plt.Figure:
    """Train/val loss and val macro-F1 per epoch, from Lightning's CSV log."""
    log = pd.read_csv(metrics_csv)
    trained = log.loc[log["train/loss"].notna(), "epoch"].unique()  # not the final re-evaluation
    log = log[log["epoch"].isin(trained)].groupby("epoch").last()
    figure, (loss_axis, f1_axis) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for column in ("train/loss", "val/loss"):
        if column in log:
            loss_axis.plot(log.index, log[column], marker="o", label=column)
    loss_axis.set(xlabel="epoch", ylabel="focal loss", title="Loss")
    loss_axis.legend()
    if "val/macro_f1" in log:
        f1_axis.plot(log.index, log["val/macro_f1"], marker="o", color="tab:green")
    f1_axis.set(xlabel="epoch", ylabel="macro-F1", title="Validation overall macro-F1")
    return figure


def write_report(
    out_dir: Path,
    results: Results,
    baseline: Results,
    evidence: Evidence,
    context: Mapping[str, Any],
    metrics_csv: Path | None = None,
    offsets: OffsetsComparison | None = None,
) -> Path:
    """Writes ``report.md``, ``metrics.json``, ``confusion_<stage>.png`` (and learning curves).

    ``metrics.json`` holds ``context``, each stage's metrics, ``majority_baseline``,
    ``intervals`` (per stage and key: ``estimate``, ``low``, ``high``) and ``collapsed`` (per
    stage: the reason per collapsed indicator); with decision offsets also
    ``decision_offsets`` (``[6, 4]``) and ``without_offsets`` (each stage's metrics without
    them).

    Args:
        out_dir: Folder of the report.
        results: Per stage (``val``, ``test``), the output of ``GradingMetrics.compute``.
        baseline: The same for the majority-grade baseline on the same images.
        evidence: Each stage's bootstrap intervals and collapsed heads.
        context: What the numbers belong to: checkpoint, split file, strategy, image counts.
        metrics_csv: Lightning's CSV log of the training run, for the learning curves.
        offsets: Decision offsets applied by the graded model, and the metrics without them.

    Returns:
        The Markdown report's path.
    """
    document = {"context": dict(context)} | metrics_json(results)
    document["majority_baseline"] = metrics_json(baseline)
    document["intervals"] = {
        stage: {key: asdict(interval) for key, interval in intervals.items()}
        for stage, intervals in evidence.intervals.items()
    }
    document["collapsed"] = evidence.collapsed
    if offsets is not None:
        document["decision_offsets"] = offsets.offsets.tolist()
        document["without_offsets"] = metrics_json(offsets.without)
    atomic_write_text(out_dir / "metrics.json", json.dumps(document, indent=2))
    for stage, values in results.items():
        save_figure(
            confusion_figure(values, f"{stage} split, row-normalised"),
            out_dir / f"confusion_{stage}.png",
        )
    sections = [
        "# scalp_ml evaluation report",
        "\n".join(f"- {key}: `{value}`" for key, value in context.items()),
        "## Macro-F1 per indicator (study's Table 2 layout)",
        table2_markdown(results, baseline, evidence),
        legend_markdown(evidence),
        "## Overall",
        summary_markdown(results, baseline, evidence),
    ]
    if "test" in results:
        hamming = _number(results["test"]["hamming_acc"])
        interval = _brackets(evidence.intervals["test"]["hamming_acc"])
        sections.append(
            f"Test Hamming accuracy: **{hamming}** {interval} (study: {TEST_HAMMING_ACCURACY})."
        )
    if offsets is not None:
        sections += [
            "## Decision offsets (fitted on the validation split only)",
            "Added to each grade's log-probability before the argmax (grade 0: 0). Macro-F1 of "
            "the same predictions without and with them:",
            offsets.markdown(results),
        ]
    for stage, values in results.items():
        sections += [f"## Per grade ({stage})", detail_markdown(values)]
    sections.append(
        "## Confusion matrices\n\n"
        + "\n".join(f"![{stage}](confusion_{stage}.png)" for stage in results)
    )
    if metrics_csv is not None and metrics_csv.is_file():
        save_figure(learning_curves_figure(metrics_csv), out_dir / "learning_curves.png")
        sections.append("## Learning curves\n\n![learning curves](learning_curves.png)")
    return atomic_write_text(out_dir / "report.md", "\n\n".join(sections) + "\n")
