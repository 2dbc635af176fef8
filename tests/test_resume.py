"""Interrupted runs: SIGKILL then ``ckpt_path=last``, SIGTERM's checkpoint, non-finite loss."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch

from tests.conftest import FAST, compose_train

# Two epochs of 21 small batches: long enough to interrupt the second mid-way.
TWO_EPOCHS = [*FAST, "trainer.max_epochs=2", "data.batch_size=8"]


def start_train(run_dir: Path, *overrides: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "scalp_ml.train", *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert process.poll() is None, f"training ended before {path} existed"
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.02)


def checkpoint_progress(path: Path) -> tuple[int, int]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return checkpoint["epoch"], checkpoint["global_step"]


def validated_epochs(run_dir: Path) -> list[int]:
    """Epochs with a val/macro_f1 row in metrics.csv (the last one: the final re-evaluation)."""
    log = pd.read_csv(run_dir / "metrics.csv")
    return log.loc[log["val/macro_f1"].notna(), "epoch"].astype(int).tolist()


@pytest.mark.slow  # three short training runs (~14 s)
def test_a_resumed_run_repeats_the_uninterrupted_one(
    synthetic_root: Path, tmp_path: Path, demo_run: tuple[Path, dict]
) -> None:
    """In-process and fast: stop after epoch 0, resume to 2 epochs, compare with demo_run."""
    from scalp_ml.train import train

    reference_dir, reference = demo_run  # the same overrides, two epochs without a stop
    overrides = [*FAST, f"data.root={synthetic_root}", f"run_dir={tmp_path}"]
    train(compose_train([*overrides, "trainer.max_epochs=1"]))
    resumed = train(compose_train([*overrides, "trainer.max_epochs=2", "ckpt_path=last"]))
    last = "checkpoints/last.ckpt"
    assert checkpoint_progress(tmp_path / last) == checkpoint_progress(reference_dir / last)
    assert validated_epochs(reference_dir) == [0, 1]  # the final evaluation adds no row
    assert validated_epochs(tmp_path) == [0, 1]  # the resumed run continues the log
    assert resumed["val/macro_f1"] == pytest.approx(reference["val/macro_f1"], abs=1e-6)


@pytest.mark.slow  # the subprocess twin of the in-process resume test above
def test_a_killed_run_resumes_to_the_uninterrupted_result(synthetic_root: Path, tmp_path: Path):
    from scalp_ml.train import train

    overrides = [*TWO_EPOCHS, f"data.root={synthetic_root}"]
    run_dir = tmp_path / "killed"
    process = start_train(run_dir, *overrides)
    last = run_dir / "checkpoints" / "last.ckpt"
    wait_for(last, process)
    process.send_signal(signal.SIGKILL)  # no handler, no clean-up: a crashed node
    assert process.wait(timeout=30) == -signal.SIGKILL
    epoch, _ = checkpoint_progress(last)
    assert epoch < 2 and not (run_dir / "metrics.json").exists()

    resumed = start_train(run_dir, *overrides, "ckpt_path=last")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output[-3000:]
    assert f"Resuming from {last}" in output
    (resume_record,) = (run_dir / "resumes").glob("*/run_info.json")  # the original is kept
    assert "ckpt_path=last" in json.loads(resume_record.read_text())["command"]
    assert "ckpt_path=last" not in json.loads((run_dir / "run_info.json").read_text())["command"]

    reference_dir = tmp_path / "uninterrupted"
    reference = train(compose_train([*overrides, f"run_dir={reference_dir}"]))
    assert validated_epochs(run_dir) == validated_epochs(reference_dir) == [0, 1]
    assert checkpoint_progress(last) == checkpoint_progress(reference_dir / "checkpoints/last.ckpt")
    result = json.loads((run_dir / "metrics.json").read_text())
    assert result["val"]["macro_f1"] == pytest.approx(reference["val/macro_f1"], abs=0.01)


class SigtermMidEpoch(L.Callback):
    """Sends SIGTERM to this process in the middle of the second epoch, as a scheduler would."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == 1 and batch_idx == 2:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_saves_a_checkpoint_before_exit(synthetic_root: Path, tmp_path: Path) -> None:
    from scalp_ml.train import train

    handler = signal.getsignal(signal.SIGTERM)
    sender = f"+callbacks.sigterm._target_={SigtermMidEpoch.__module__}.SigtermMidEpoch"
    cfg = compose_train([*TWO_EPOCHS, f"data.root={synthetic_root}", f"run_dir={tmp_path}", sender])
    with pytest.raises(SystemExit) as stopped:
        train(cfg)
    assert stopped.value.code == 128 + signal.SIGTERM  # "killed by SIGTERM" for the scheduler
    assert signal.getsignal(signal.SIGTERM) == handler  # Lightning restored the handler
    # Saved after the batch that was running: mid-epoch, 21 steps per epoch.
    assert checkpoint_progress(tmp_path / "checkpoints" / "last.ckpt") == (1, 21 + 3)
    assert not (tmp_path / "metrics.json").exists()


def test_resume_without_a_last_checkpoint_names_the_folder(tmp_path: Path) -> None:
    from scalp_ml.training.job import resume_checkpoint

    with pytest.raises(FileNotFoundError, match=str(tmp_path / "last.ckpt")):
        resume_checkpoint("last", tmp_path)
    assert resume_checkpoint(None, tmp_path) is None


def test_a_non_finite_loss_stops_training_naming_the_step(
    synthetic_root: Path, tmp_path: Path
) -> None:
    from scalp_ml.train import train

    cfg = compose_train([*FAST, f"data.root={synthetic_root}", f"run_dir={tmp_path}"])
    cfg.optimizer.lr = float("inf")  # the first update makes every weight non-finite
    with pytest.raises(FloatingPointError, match=r"Training loss is nan at step 1 \(batch 1\)"):
        train(cfg)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    last = run_dir / "checkpoints" / "last.ckpt"
    return torch.load(last, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow  # three short training runs per case
@pytest.mark.parametrize("workers", [0, 2])
def test_a_run_stopped_mid_epoch_resumes_exactly(
    synthetic_root: Path, tmp_path: Path, workers: int
) -> None:
    """SIGTERM after batch 3 of epoch 1, then ``ckpt_path=last``: the same weights, bit for
    bit, as the run never stopped (the sampler skips the 3 batches, augmentation is seeded per
    image, torch's generators come back from the checkpoint)."""
    from scalp_ml.train import train

    overrides = [*TWO_EPOCHS, f"data.root={synthetic_root}", f"data.num_workers={workers}"]
    sender = f"+callbacks.sigterm._target_={SigtermMidEpoch.__module__}.SigtermMidEpoch"
    stopped = tmp_path / "stopped"
    with pytest.raises(SystemExit):
        train(compose_train([*overrides, f"run_dir={stopped}", sender]))
    assert checkpoint_progress(stopped / "checkpoints" / "last.ckpt") == (1, 21 + 3)
    train(compose_train([*overrides, f"run_dir={stopped}", "ckpt_path=last"]))
    train(compose_train([*overrides, f"run_dir={tmp_path / 'whole'}"]))
    resumed, whole = final_weights(stopped), final_weights(tmp_path / "whole")
    assert resumed.keys() == whole.keys()
    different = [name for name in whole if not torch.equal(resumed[name], whole[name])]
    assert not different, f"{len(different)} of {len(whole)} tensors differ, e.g. {different[0]}"
