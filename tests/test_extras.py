"""The optional stacks: core commands import without them, a command that needs one names it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scalp_ml.cli import run_command
from scalp_ml.data.device_augment import DeviceAugmentation
from scalp_ml.extras import MissingExtraError
from scalp_ml.inference.export import onnx_bytes
from scalp_ml.inference.prediction import predict
from scalp_ml.inference.predictors import load_predictor
from scalp_ml.search.trial import TRIAL_ENV, pruning_callbacks
from scalp_ml.training.sweep import _pruned
from tests.test_device_augment import augment_values

# Every optional package (and what only they pull in), missing in the subprocess check.
OPTIONAL = (
    "onnx",
    "onnxruntime",
    "onnxscript",
    "pytorch_grad_cam",
    "optuna",
    "sqlalchemy",
    "alembic",
    "kornia",
    "submitit",
    "hydra_plugins.hydra_submitit_launcher",
)
# The modules a core command (train, evaluate, predict and export with a checkpoint, index,
# synthetic data) imports, also the ones it imports only when it runs.
CORE_MODULES = (
    "scalp_ml.train",
    "scalp_ml.evaluate",
    "scalp_ml.predict",
    "scalp_ml.export",
    "scalp_ml.data.aihub.index",
    "scalp_ml.data.synthetic",
    "scalp_ml.training.job",
    "scalp_ml.training.sweep",
    "scalp_ml.evaluation.command",
    "scalp_ml.inference.prediction",
    "scalp_ml.inference.export",
)
IMPORT_WITHOUT_EXTRAS = f"""
import sys
sys.modules.update(dict.fromkeys({OPTIONAL!r}))  # None: import fails, find_spec finds nothing
for module in {CORE_MODULES!r}:
    __import__(module)
"""


def pip_line(extra: str) -> str:
    return re.escape(f"pip install 'scalp_ml[{extra}]'")


def block(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Makes importing ``modules`` raise ImportError, as if they were not installed."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_core_commands_import_without_the_optional_packages() -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_WITHOUT_EXTRAS], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_onnx_predict_names_the_export_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    block(monkeypatch, "onnxruntime")
    model = tmp_path / "model.onnx"
    model.write_bytes(b"")
    with pytest.raises(MissingExtraError, match=f"{re.escape(str(model))}.*{pip_line('export')}"):
        load_predictor(model)


def test_onnx_export_names_the_export_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    block(monkeypatch, "onnxscript")
    with pytest.raises(MissingExtraError, match=f"format=onnx.*{pip_line('export')}"):
        onnx_bytes(torch.nn.Identity(), torch.zeros(1, 3, 4, 4), {})


def test_explain_names_the_explain_extra_before_grading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    block(monkeypatch, "pytorch_grad_cam")
    with pytest.raises(MissingExtraError, match=f"explain=true.*{pip_line('explain')}"):
        predict(str(tmp_path / "missing.ckpt"), str(tmp_path), tmp_path / "out", explain=True)
    assert not (tmp_path / "out").exists()


def test_device_augmentation_names_the_gpu_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    block(monkeypatch, "kornia", "kornia.augmentation")
    with pytest.raises(MissingExtraError, match=f"augment_on=gpu.*{pip_line('gpu')}"):
        DeviceAugmentation(augment_values())


def test_trial_pruning_names_the_search_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    block(monkeypatch, "optuna")
    monkeypatch.setenv(TRIAL_ENV, "0")
    with pytest.raises(MissingExtraError, match=pip_line("search")):
        pruning_callbacks("val/macro_f1")


def test_a_failed_sweep_job_without_optuna_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    block(monkeypatch, "optuna")
    assert not _pruned(RuntimeError("out of memory"))


@pytest.mark.parametrize(
    ("override", "module", "extra"),
    [
        ("hydra/launcher=slurm", "hydra_plugins.hydra_submitit_launcher", "slurm"),
        ("hparams_search=optuna_demo", "optuna", "search"),
        ("hydra/sweeper=optuna", "optuna", "search"),
    ],
)
def test_a_plugin_override_names_its_extra_before_hydra_starts(
    monkeypatch: pytest.MonkeyPatch, override: str, module: str, extra: str
) -> None:
    block(monkeypatch, module)
    for flags in (["-m"], ["--help"]):
        monkeypatch.setattr(sys, "argv", ["scalp-train", *flags, override])
        with pytest.raises(SystemExit, match=f"{override} needs .*{pip_line(extra)}"):
            run_command(lambda: pytest.fail("Hydra started"), "train")


def test_every_package_of_the_source_is_installed() -> None:
    """pyproject lists the packages (the Hydra plugin's folder is mapped): none may be missing."""
    import tomllib

    root = Path(__file__).parents[1]
    settings = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    source = {
        ".".join(init.parent.relative_to(root).parts)
        for init in (root / "scalp_ml").rglob("__init__.py")
        if "_hydra_plugins" not in init.parts
    }
    assert source <= set(settings["packages"])
    plugin = settings["package-dir"]["hydra_plugins"]
    assert (root / plugin / "scalp_optuna_sweeper" / "optuna_sweeper.py").is_file()
