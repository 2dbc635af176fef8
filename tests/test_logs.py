"""Logs fit for clusters: outside a terminal, progress lines and one line per epoch, once each."""

import logging
import re
from pathlib import Path

import pytest

from scalp_ml import progress as progress_module
from scalp_ml.progress import progress
from tests.conftest import FAST, run_train


def test_outside_a_terminal_progress_is_logged_in_lines(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(progress_module, "in_terminal", lambda: False)
    monkeypatch.setattr(progress_module, "EVERY_SECONDS", 0.0)  # a line for every item
    with caplog.at_level(logging.INFO, logger="scalp_ml.progress"):
        assert list(progress(iter(range(3)), "Decoding 3 images", total=3)) == [0, 1, 2]
    lines = [record.getMessage() for record in caplog.records]
    assert lines[:2] == ["Decoding 3 images: 1/3 (33%)", "Decoding 3 images: 2/3 (67%)"]
    assert re.fullmatch(r"Decoding 3 images: 3/3 done in \d+\.\d s", lines[2])


@pytest.mark.slow  # the subprocess twin of test_faults' in-process noise test
def test_a_demo_run_outside_a_terminal_logs_each_epoch_once_and_no_known_noise(
    synthetic_root: Path, tmp_path: Path
) -> None:
    overrides = [o for o in FAST if "progress_bar" not in o]  # the run decides, as for users
    result = run_train(
        *overrides,
        f"data.root={synthetic_root}",
        f"hydra.run.dir={tmp_path}",
        "trainer.max_epochs=3",
    )
    output = result.stdout + result.stderr  # pipes: not a terminal
    epochs = re.findall(
        r"Epoch (\d)/3, train loss \d\.\d+, val/macro_f1 \d\.\d+, .* images/s", output
    )
    assert epochs == ["1", "2", "3"], output[-3000:]
    assert output.count("Seed set to 42") == 1  # Lightning's lines once, through Hydra's logger
    assert output.count(f"Split {synthetic_root}") == 1  # not once per stage that reads it
    for noise in ["Tip:", "LeafSpec", "logging interval", "INFO: ", "\x1b[", "Total FLOPs: 0"]:
        assert noise not in output, noise
    log_file = (tmp_path / "train.log").read_text()
    assert "Epoch 3/3" in log_file and "Seed set to 42" in log_file


def test_an_onnx_export_logs_none_of_the_optimisers_passes(
    best_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from scalp_ml.inference.export import export

    with caplog.at_level(logging.INFO):
        export(best_checkpoint, "onnx", tmp_path / "model.onnx")
    passes = [
        r.getMessage() for r in caplog.records if r.name.startswith(("onnx_ir", "onnxscript"))
    ]
    assert not passes
