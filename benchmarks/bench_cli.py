"""Command start-up benchmark: ``--help`` of every command, and predicting without torch.

Times (wall clock, median of ``--runs`` fresh processes) ``python -m <command> --help`` for every
command, then a whole ``python -m scalp_ml.predict`` run on a few synthetic photographs with an
ONNX export and with the checkpoint it came from, each run under ``python -X importtime``: wall
time, import time (the sum of every module's own time) and whether torch or Lightning was
imported at all. The checkpoint comes from a one-epoch run of the demo recipe on a
small synthetic set. Prints Markdown tables and appends them, with date, machine and command,
to ``benchmarks/RESULTS.md`` (not with ``--no-record``).

Run: ``make bench-cli`` (or ``python benchmarks/bench_cli.py``).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import append_section, argument_parser, compose, table

from scalp_ml.data.synthetic import generate
from scalp_ml.inference.export import export
from scalp_ml.train import train

REPO = Path(__file__).resolve().parents[1]
WORK_DIR = Path(tempfile.gettempdir()) / "scalp_bench"
COMMANDS = (
    "scalp_ml.train",
    "scalp_ml.evaluate",
    "scalp_ml.predict",
    "scalp_ml.export",
    "scalp_ml.compare",
    "scalp_ml.data.aihub.index",
    "scalp_ml.data.report",
    "scalp_ml.data.synthetic",
)
HEAVY = ("torch", "lightning")  # what predicting with an ONNX file must not import
HELP_GOAL_SECONDS = 3.0
INTERPRETER = "`python -c pass` (interpreter start, for reference)"
# Every run offline and quiet, this checkout's package first (``-m`` runs from the repository).
ENVIRONMENT = os.environ | {
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "HF_HUB_OFFLINE": "1",
    "WANDB_MODE": "offline",
}


def run(arguments: list[str]) -> tuple[float, str]:
    """Runs ``python <arguments>`` from the repository root: wall seconds and its stderr.

    Raises:
        RuntimeError: The command failed (the message holds the end of its stderr).
    """
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *arguments], cwd=REPO, env=ENVIRONMENT, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"python {' '.join(arguments)} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stderr


def wall_seconds(arguments: list[str], runs: int) -> list[float]:
    """Wall times of ``runs`` runs of ``python <arguments>``."""
    return [run(arguments)[0] for _ in range(runs)]


def imports(arguments: list[str]) -> tuple[float, float, dict[str, str]]:
    """One run of ``python -X importtime <arguments>``: wall and import seconds, what it imported.

    Import seconds: the sum of each module's own import time (a module loaded through
    ``importlib.import_module``, as Hydra loads a ``_target_``, is not listed itself, only what
    it imports). What it imported: each top-level package, with the outermost listed import
    that pulled it in.
    """
    wall, stderr = run(["-X", "importtime", *arguments])
    rows = [
        line.removeprefix("import time:").split("|")
        for line in stderr.splitlines()
        if line.startswith("import time:")
    ][1:]  # the first is the header
    microseconds, packages = 0, {}
    for index, (own, _, name) in enumerate(rows):
        microseconds += int(own)
        package = name.strip().split(".")[0]
        if package not in packages:  # printed after its children: the next unindented row
            outer = next(row[2] for row in rows[index:] if not row[2].startswith("  "))
            packages[package] = outer.strip()
    return wall, microseconds / 1e6, packages


@dataclass(frozen=True)
class Prediction:
    """Figures of ``python -m scalp_ml.predict`` with one model file.

    Attributes:
        wall: Wall seconds of each run.
        imports: Seconds spent importing in each run.
        packages: Every top-level package imported, with the import that pulled it in.
    """

    wall: list[float]
    imports: list[float]
    packages: dict[str, str]


def summary(seconds: list[float]) -> tuple[str, str, str]:
    """Median, fastest and slowest of ``seconds``, formatted."""
    median, fastest, slowest = statistics.median(seconds), min(seconds), max(seconds)
    return f"{median:.2f}", f"{fastest:.2f}", f"{slowest:.2f}"


def help_times(runs: int) -> dict[str, list[float]]:
    """Wall seconds of every command's ``--help`` (and of the bare interpreter), by command."""
    times = {INTERPRETER: wall_seconds(["-c", "pass"], runs)}
    for command in COMMANDS:
        name = f"`python -m {command} --help`"
        times[name] = wall_seconds(["-m", command, "--help"], runs)
        print(name, summary(times[name]), flush=True)
    return times


def tiny_model(data: Path, scratch: Path) -> Path:
    """A checkpoint of the demo recipe trained for one epoch on ``data``."""
    run_dir = scratch / "run"
    overrides = [
        "experiment=demo",
        f"data.root={data}",
        "data.num_workers=0",
        f"run_dir={run_dir}",
        "trainer.max_epochs=1",
        "logger=none",
        "~callbacks.progress_bar",
        "+trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
    ]
    train(compose("train", overrides))
    return run_dir / "checkpoints" / "best.ckpt"


def photographs(data: Path, count: int, folder: Path) -> Path:
    """A folder of ``count`` photographs of the synthetic set."""
    folder.mkdir(parents=True)
    for path in sorted(data.rglob("*.jpg"))[:count]:
        shutil.copy(path, folder / path.name)
    return folder


def prediction_times(data: Path, photos: int, runs: int) -> dict[str, Prediction]:
    """Prediction figures with an ONNX export and with its checkpoint, by model file."""
    results = {}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        checkpoint = tiny_model(data, scratch)
        models = {
            "ONNX file (`.onnx`)": export(checkpoint, "onnx", scratch / "model.onnx"),
            "checkpoint (`.ckpt`)": checkpoint,
        }
        inputs = photographs(data, photos, scratch / "photos")
        for name, model in models.items():
            arguments = [
                "-m",
                "scalp_ml.predict",
                f"ckpt_path={model}",
                f"inputs={inputs}",
                f"hydra.run.dir={scratch / model.suffix[1:]}",
                "device=cpu",
            ]
            walls, seconds, found = zip(*(imports(arguments) for _ in range(runs)), strict=True)
            packages = {key: outer for each in found for key, outer in each.items()}
            results[name] = Prediction(list(walls), list(seconds), packages)
            print(name, summary(results[name].wall), summary(results[name].imports), flush=True)
    return results


def help_lines(times: dict[str, list[float]], cores: int) -> list[str]:
    """The ``--help`` table and its verdict."""
    goal = HELP_GOAL_SECONDS
    rows = [
        (
            name,
            *summary(seconds),
            ""
            if name == INTERPRETER
            else ("yes" if statistics.median(seconds) < goal else "**no**"),
        )
        for name, seconds in times.items()
    ]
    slowest = max(statistics.median(s) for name, s in times.items() if name != INTERPRETER)
    return [
        *table(("command", "median s", "fastest s", "slowest s", f"< {goal:.0f} s"), rows),
        "",
        f"- Goal `--help` < {goal:.0f} s on {cores} cores: "
        f"**{'met' if slowest < goal else 'NOT met'}** (slowest median {slowest:.2f} s).",
    ]


def prediction_lines(predictions: dict[str, Prediction]) -> list[str]:
    """The prediction table and the verdict on the ONNX file's imports."""
    rows = [
        (
            name,
            f"{statistics.median(found.wall):.2f} ({min(found.wall):.2f}-{max(found.wall):.2f})",
            f"{statistics.median(found.imports):.2f}",
            *("yes" if package in found.packages else "no" for package in HEAVY),
        )
        for name, found in predictions.items()
    ]
    header = (
        "predict with",
        "wall s, median (fastest-slowest)",
        "imports s, median",
        *(f"imports {package}" for package in HEAVY),
    )
    onnx = next(iter(predictions.values()))
    heavy = [f"{key} (via `{onnx.packages[key]}`)" for key in HEAVY if key in onnx.packages]
    return [
        *table(header, rows),
        "",
        "- Goal: predicting with an `.onnx` file imports neither torch nor Lightning: "
        + (f"**NOT met**: it imports {', '.join(heavy)}." if heavy else "**met**."),
    ]


def main() -> None:
    """Times every command's help and both predictions; appends the tables to RESULTS.md."""
    parser = argument_parser(__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--images", type=int, default=120, help="synthetic set to train on")
    parser.add_argument("--photos", type=int, default=8, help="photographs to predict")
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR, help="synthetic data")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    cores = len(os.sched_getaffinity(0))
    helps = help_times(args.runs)
    data = generate(args.work_dir / f"cli-synthetic-{args.images}", args.images, seed=0)
    predictions = prediction_times(data, args.photos, args.runs)
    lines = [
        *help_lines(helps, cores),
        "",
        *prediction_lines(predictions),
        f"- Each figure: {args.runs} fresh processes (`python -m ...` from the repository "
        f"root). Predictions of {args.photos} synthetic 640x480 photographs (`device=cpu`) by "
        f"the demo model (test_efficientnet, 160 px, one epoch on {args.images} synthetic "
        "images) and its ONNX export, each run under `python -X importtime`; import time: the "
        "sum of every module's own time.",
        f"- Shared machine: load average (1 min) {load:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end, on {cores} cores.",
    ]
    append_section(
        "Command start-up, CPU",
        lines,
        "onnxruntime",
        "lightning",
        note="wall clock",
        record=not args.no_record,
    )


if __name__ == "__main__":
    main()
