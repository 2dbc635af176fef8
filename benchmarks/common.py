"""What every benchmark script shares: timing, the machine's description, the results file."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import torch
from hydra import compose as compose_config
from hydra import initialize_config_dir
from omegaconf import DictConfig

import scalp_ml.config  # noqa: F401  (registers the config schemas, as every command does)

RESULTS = Path(__file__).with_name("RESULTS.md")
CONF_DIR = Path(__file__).parents[1] / "conf"


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """A script's parser (described by its docstring's first line), with ``--no-record``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(
        "--no-record", action="store_true", help="print the results; do not append to RESULTS.md"
    )
    return parser


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """A config as ``python -m scalp_ml.<command> <overrides>`` composes it."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose_config(config_name, overrides=overrides)


def timings(
    run: Callable[[], object], seconds: float, warmup: int = 3, min_runs: int = 5
) -> list[float]:
    """Wall times of ``run`` after ``warmup`` calls, for ``seconds`` and ``min_runs`` or more."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < seconds:
        begin = time.perf_counter()
        run()
        times.append(time.perf_counter() - begin)
    return times


def machine(*modules: str) -> str:
    """CPU model, usable cores, GPU if any, and the versions of Python, torch and ``modules``."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    versions = [f"torch {torch.__version__}"]
    for name in modules:
        module = __import__(name)
        versions.append(f"{name} {module.__version__}")
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} usable cores{gpu}; "
        f"Python {platform.python_version()}, {', '.join(versions)}"
    )


def table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    """A Markdown table's lines."""
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def append_section(
    title: str, lines: Iterable[str], *modules: str, note: str = "", record: bool = True
) -> None:
    """Prints a dated section (machine, the command that ran, ``lines``).

    With ``record`` (a run without ``--no-record``) the section is also appended to RESULTS.md.
    """
    command = " ".join(["python", *sys.argv]).strip()
    section = [
        f"### {title} — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine(*modules)}",
        f"- command: `{command}`" + (f" ({note})" if note else ""),
        "",
        *lines,
    ]
    print("\n".join(section), flush=True)
    if record:
        with RESULTS.open("a", encoding="utf-8") as results:
            results.write("\n" + "\n".join(section) + "\n")


def replicated_dataset(out_dir: Path, n_images: int, distinct: int = 50) -> Path:
    """An AI Hub-layout dataset of ``n_images`` synthetic 640x480 photographs, made fast.

    ``distinct`` photographs come from the project's generator; the rest are hard links to
    them under new names, each with its own label file. Reused when already complete.
    """
    from scalp_ml.data.aihub.index import load_manifest
    from scalp_ml.data.synthetic import generate
    from scalp_ml.labels import INDICATORS

    root = out_dir / f"replicated-{n_images}"
    done = root / ".complete"
    if done.is_file():
        return root
    base = generate(out_dir / f"base-{distinct}", n_images=distinct, seed=0)
    manifest = load_manifest(base, show_progress=False)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    for index in range(n_images):
        row = manifest.iloc[index % len(manifest)]
        name = f"{index:06d}_{row['name']}"
        target = images / name
        if not target.exists():
            os.link(base / row["image"], target)
        label = {item.key: str(row[item.name]) for item in INDICATORS}
        (images / f"{Path(name).stem}.json").write_text(
            json.dumps({"image_file_name": name, **label})
        )
    done.touch()
    return root
