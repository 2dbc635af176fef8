"""Shared fixtures: one small synthetic dataset and one tiny training run per test session."""

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach the network
os.environ["WANDB_MODE"] = "offline"

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import scalp_ml.config  # noqa: F401  (registers the config schemas, as every command does)
from scalp_ml.data.synthetic import generate

CONF_DIR = Path(__file__).parents[1] / "conf"
# Small and fast: tiny images, no loader processes, no progress bar or model summary.
FAST = [
    "experiment=demo",
    "data.image_size=64",
    "data.num_workers=0",
    "data.cache=none",  # the JPEG path; tests/test_cache.py covers the cache
    "~callbacks.progress_bar",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
]


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """A config as ``python -m scalp_ml.<entry> <overrides>`` would compose it."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(name, overrides=overrides)


def run_train(*overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m scalp_ml.train <overrides>`` in a subprocess; with ``check``, it must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", "scalp_ml.train", *overrides], capture_output=True, text=True
    )
    assert result.returncode == 0 or not check, result.stderr[-3000:]
    return result


def compose_train(overrides: list[str]) -> DictConfig:
    """The training config (see :func:`compose_config`)."""
    return compose_config("train", overrides)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240 synthetic images in the AI Hub layout."""
    return generate(tmp_path_factory.mktemp("synthetic"), n_images=240, seed=7, workers=2)


@pytest.fixture(scope="session")
def demo_run(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A two-epoch tiny training run: its run directory and returned metrics."""
    from scalp_ml.train import train

    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_train(
        [*FAST, f"data.root={synthetic_root}", f"run_dir={run_dir}", "trainer.max_epochs=2"]
    )
    return run_dir, train(cfg)


@pytest.fixture(scope="session")
def synthetic_demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's full synthetic dataset, as `make train` generates it (slow tests only)."""
    from scalp_ml.data.synthetic import generate

    n_images = int(os.environ.get("SCALP_DEMO_IMAGES", "2000"))
    return generate(tmp_path_factory.mktemp("demo_data"), n_images=n_images, seed=0)


@pytest.fixture(scope="session")
def best_checkpoint(demo_run: tuple[Path, dict]) -> Path:
    """The best checkpoint of the tiny training run."""
    return demo_run[0] / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="session")
def onnx_file(best_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run's best checkpoint exported to ONNX."""
    from scalp_ml.inference.export import export

    return export(best_checkpoint, "onnx", tmp_path_factory.mktemp("export") / "model.onnx")


class Disks:
    """Small tmpfs file systems for full-disk and read-only cases, unmounted after the test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.mounted: list[Path] = []

    def small(self, name: str, size: str = "1m") -> Path:
        """A file system of ``size`` mounted at a new folder; skips when mounting is not
        allowed here (it needs root or CAP_SYS_ADMIN)."""
        target = self.folder / name
        target.mkdir()
        self._mount(target, "-t", "tmpfs", "-o", f"size={size}", "none")
        return target

    def read_only(self, target: Path) -> None:
        """Remounts one of these file systems read-only."""
        self._mount(target, "-o", "remount,ro")

    def _mount(self, target: Path, *arguments: str) -> None:
        result = subprocess.run(
            ["mount", *arguments, str(target)], capture_output=True, text=True, check=False
        )
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); needs root")
        if target not in self.mounted:
            self.mounted.append(target)

    def unmount(self) -> None:
        for target in reversed(self.mounted):
            subprocess.run(["umount", "--lazy", str(target)], check=False)


@pytest.fixture
def disks(tmp_path: Path):
    """See :class:`Disks`."""
    made = Disks(tmp_path)
    yield made
    made.unmount()
