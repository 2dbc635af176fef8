"""What makes a run reproducible, written beside its outputs: config, seed, split, versions, git."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from scalp_ml.atomic import atomic_write_text
from scalp_ml.data.splits import file_sha256

PACKAGES = (
    "scalp_ml",
    "torch",
    "torchvision",
    "lightning",
    "timm",
    "torchmetrics",
    "hydra-core",
    "omegaconf",
    "albumentations",
    "opencv-python-headless",
    "iterative-stratification",
    "numpy",
    "wandb",
)


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on (``None``: not installed)."""
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def git_state(directory: Path) -> dict[str, Any]:
    """Commit of the scalp_ml checkout holding ``directory`` and whether it had changes.

    ``None`` for both when the package does not sit in its own git checkout (installed from a
    wheel, or inside some other repository, whose commit would say nothing about this code).
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True, check=True
        ).stdout.strip()

    unknown = {"commit": None, "dirty": None}
    try:
        top = Path(git("rev-parse", "--show-toplevel")).resolve()
        if not directory.resolve().is_relative_to(top / "scalp_ml"):
            return unknown
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.CalledProcessError):
        return unknown


def record_run(run_dir: Path, cfg: DictConfig, split_file: Path) -> dict[str, Any]:
    """Writes ``config.yaml`` (resolved) and ``run_info.json`` into ``run_dir``."""
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    info = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": sys.argv,
        "seed": cfg.seed,
        "split_file": str(split_file),
        "split_sha256": file_sha256(split_file),
        "git": git_state(Path(__file__).parent),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
    }
    atomic_write_text(run_dir / "run_info.json", json.dumps(info, indent=2))
    return info
