"""One training job, as ``python -m scalp_ml.train`` runs it (see :mod:`scalp_ml.train`).

Fits on the train split, keeps the checkpoint with the best validation macro-F1, grades the
validation and test splits with it and writes the report into the run directory.
"""

from __future__ import annotations

import logging
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from scalp_ml.config import plain
from scalp_ml.data.datamodule import ScalpDataModule
from scalp_ml.evaluation.evidence import EvidenceSettings
from scalp_ml.evaluation.offsets import fit_offsets
from scalp_ml.evaluation.predictions import predict_split
from scalp_ml.evaluation.runner import evaluate_splits
from scalp_ml.inference.checkpoint import read_checkpoint, write_with_offsets
from scalp_ml.models.backbones import load_pretrained_weights
from scalp_ml.module import ScalpGrader
from scalp_ml.progress import in_terminal
from scalp_ml.search.trial import pruning_callbacks
from scalp_ml.training.callbacks import resume_hint
from scalp_ml.training.checkpoint_io import AtomicCheckpointIO
from scalp_ml.training.loggers import build_loggers, finish_wandb
from scalp_ml.training.quiet import silence_known_noise
from scalp_ml.training.run_record import record_run

log = logging.getLogger(__name__)

RUN_FILES = ("run_info.json", "checkpoints", "metrics.csv", "metrics.json")  # a run was here
KEPT_ON_OVERWRITE = {".hydra", "train.log"}  # this run's own Hydra config and log


def train(cfg: DictConfig) -> dict[str, float]:
    """Runs one training job from a composed config.

    Returns:
        Scalar validation and test metrics of the best checkpoint (``val/macro_f1``, ...).
    """
    silence_known_noise()
    check_settings(cfg)
    L.seed_everything(cfg.seed, workers=True)  # before the model: its initial weights are seeded
    datamodule = ScalpDataModule(**data_settings(cfg.data), seed=cfg.seed)
    model = build_module(cfg)  # bad settings fail here, before the run directory is touched
    if not cfg.speed.compile:  # one image: the model summary's sizes and FLOPs (not "0")
        model.example_input_array = torch.zeros((1, 3, *datamodule.image_size), dtype=torch.uint8)
    run_dir = Path(cfg.run_dir)
    claim_run_dir(run_dir, resuming=cfg.ckpt_path is not None, overwrite=cfg.overwrite)
    ckpt_path = resume_checkpoint(cfg.ckpt_path, run_dir / "checkpoints")
    if ckpt_path is None:  # a resumed run gets its weights from the checkpoint
        load_pretrained_weights(
            model.net.backbone, cfg.model.backbone, cfg.model.pretrained, cfg.model.weights
        )
    apply_speed_switches(model, cfg.speed)
    loggers = build_loggers(cfg.logger, _sweep_group())
    try:
        arguments = instantiate(cfg.trainer, _convert_="all")
        plugins = [*(arguments.pop("plugins", None) or []), AtomicCheckpointIO()]
        callbacks = [
            *(instantiate(callback) for callback in cfg.callbacks.values()),
            *pruning_callbacks(cfg.monitor.metric),  # in an Optuna search: its trial's
        ]
        if not in_terminal():  # a bar in a log file is noise; EpochLog's lines say it all
            callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
            arguments["enable_progress_bar"] = False
        trainer = L.Trainer(
            **arguments,
            plugins=plugins,
            default_root_dir=run_dir,
            callbacks=callbacks,
            logger=loggers or False,
        )
        if trainer.local_rank == 0:  # DDP: each machine's first process (fit makes others wait)
            datamodule.prepare_data()
        if trainer.is_global_zero:
            record_run(_record_dir(run_dir, ckpt_path), cfg, datamodule.split_file)
        for logger in trainer.loggers:  # the whole run config (W&B: the run's config panel)
            logger.log_hyperparams(plain(cfg))
        settings = EvidenceSettings(**plain(cfg.evaluation))
        offsets_seed = cfg.seed if cfg.decision_offsets else None
        with stops_exit_with_signal_status(run_dir):
            return _fit_and_evaluate(
                trainer, model, datamodule, ckpt_path, run_dir, settings, offsets_seed
            )
    finally:
        finish_wandb(loggers)


def check_settings(cfg: DictConfig) -> None:
    """Refuses settings that make no sense together, before any work.

    Raises:
        ValueError: ``trainer.max_epochs=0``, or decision offsets with cross-validation folds
            (they would be fitted on the fold's validation images, which are then the
            out-of-fold predictions: use the offsets fitted on those, oof_decision_offsets.json).
    """
    if cfg.trainer.max_epochs == 0:
        raise ValueError("trainer.max_epochs=0 trains nothing; use 1 or more (-1: no limit)")
    if cfg.decision_offsets and cfg.data.split.folds:
        raise ValueError(
            "decision_offsets=true with data.split.folds: each fold would fit offsets on its "
            "own validation images, biasing the out-of-fold predictions; leave it false and "
            "use oof_decision_offsets.json, fitted on all out-of-fold predictions"
        )


def claim_run_dir(run_dir: Path, resuming: bool, overwrite: bool) -> None:
    """Creates ``run_dir``, refusing one that holds an earlier run unless told what to do.

    Args:
        run_dir: The run's directory.
        resuming: The run continues from a checkpoint (``ckpt_path``): its folder is reused.
            Under DDP only the first process checks (the others find its files).
        overwrite: Remove the earlier run's files first (Hydra's ``.hydra`` and log stay).

    Raises:
        FileExistsError: ``run_dir`` holds a run and neither applies (the message says how).
    """
    earlier = [name for name in RUN_FILES if (run_dir / name).exists()]
    if earlier and not resuming and rank_zero_only.rank == 0:  # DDP: the first process decides
        if not overwrite:
            raise FileExistsError(
                f"{run_dir} already holds a run ({', '.join(earlier)}); a new run there would "
                "mix its checkpoints and logs with it. Continue it with ckpt_path=last, choose "
                "another hydra.run.dir, or pass overwrite=true to replace it."
            )
        log.warning("overwrite=true: removing the earlier run in %s", run_dir)
        for entry in run_dir.iterdir():
            if entry.is_dir() and entry.name not in KEPT_ON_OVERWRITE:
                shutil.rmtree(entry)
            elif entry.name not in KEPT_ON_OVERWRITE:
                entry.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


def build_module(cfg: DictConfig) -> ScalpGrader:
    """The LightningModule of the ``model``, ``optimizer`` and ``loss`` config groups.

    Loss parameters left ``null`` (those the chosen loss does not use) keep the module's
    defaults. A loss with priors or class weights takes the training split's grade counts from
    the datamodule when fitting starts (:meth:`ScalpGrader.setup`). A head the loss cannot
    train fails here, before the data is indexed.
    """
    model, optimizer, loss = plain(cfg.model), plain(cfg.optimizer), plain(cfg.loss)
    parameters = {key: value for key, value in loss.items() if key != "name" and value is not None}
    return ScalpGrader(
        backbone=model["backbone"],
        dropout=model["dropout"],
        mean=model["mean"],
        std=model["std"],
        head=model["head"],
        tta=model["tta"],
        optimizer=optimizer["name"],
        lr=optimizer["lr"],
        weight_decay=optimizer["weight_decay"],
        loss=loss["name"],
        **parameters,
    )


def data_settings(data: DictConfig) -> dict[str, Any]:
    """The datamodule's arguments, with the data root made absolute.

    Checkpoints store these settings, so ``evaluate`` finds the data from any folder.

    Raises:
        ValueError: ``data.root`` is empty (it would index the working directory).
    """
    settings = plain(data)
    if not str(settings["root"]).strip():
        raise ValueError(
            "data.root is empty: set it to the dataset folder, e.g. data.root=/data/aihub"
        )
    settings["root"] = str(Path(settings["root"]).expanduser().resolve())
    return settings


@contextmanager
def stops_exit_with_signal_status(run_dir: Path) -> Iterator[None]:
    """Ends the process with 128 + the signal when SIGTERM or Ctrl-C stops the run.

    A scheduler or shell then sees "killed by SIGTERM" (143) or "interrupted" (130) and never
    takes a cut-off run for a finished one. While fitting, CheckpointOnSigterm has saved
    ``last.ckpt`` on SIGTERM; Ctrl-C (which Lightning turns into ``exit(1)``) can land anywhere
    in a batch, so it saves nothing and the run resumes from the ``last.ckpt`` of the last
    validation, if there was one.
    """
    try:
        yield
    except SIGTERMException as stop:  # a SystemExit without a status: it would exit 0
        raise SystemExit(128 + signal.SIGTERM) from stop
    except (KeyboardInterrupt, SystemExit) as stop:
        if isinstance(stop, SystemExit) and not isinstance(stop.__context__, KeyboardInterrupt):
            raise  # an exit that is not Lightning's answer to Ctrl-C
        log.error("Interrupted (Ctrl-C): %s", interrupted_hint(run_dir))
        raise SystemExit(128 + signal.SIGINT) from stop


def interrupted_hint(run_dir: Path) -> str:
    """What a run stopped by Ctrl-C can do next: resume from ``last.ckpt``, or start again."""
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return f"checkpoints/last.ckpt of the last validation is kept; {resume_hint(run_dir)}"
    return "no checkpoint was saved yet: run it again (overwrite=true to reuse this run_dir)"


def _fit_and_evaluate(
    trainer: L.Trainer,
    model: ScalpGrader,
    datamodule: ScalpDataModule,
    ckpt_path: str | None,
    run_dir: Path,
    settings: EvidenceSettings,
    offsets_seed: int | None,
) -> dict[str, float]:
    """Fits, then grades val and test with the best checkpoint and writes the report.

    With an ``offsets_seed`` (``decision_offsets=true``), decision offsets are fitted on the
    validation split's predictions of the best checkpoint and saved with its weights as
    ``checkpoints/best-tuned.ckpt``, which is then graded (the report also shows the scores
    without the offsets).
    """
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best:  # its state_dict: the weights that scored best (averaged ones with weight averaging)
        model.load_state_dict(read_checkpoint(best)["state_dict"])
    else:
        log.warning("No best checkpoint was saved; evaluating the weights as they are")
    graded = best or "(none: final weights)"
    if offsets_seed is not None:
        validation = predict_split(trainer, model, datamodule.dataloader("val"))
        offsets = fit_offsets(validation.probabilities, validation.grades, offsets_seed)
        model.decision_offsets.copy_(torch.from_numpy(offsets))
        log.info("Decision offsets fitted on the validation split: %s", offsets.tolist())
        if best and trainer.is_global_zero:
            tuned = Path(best).with_name("best-tuned.ckpt")
            graded = str(write_with_offsets(best, tuned, model.decision_offsets))
    return evaluate_splits(
        trainer,
        model,
        datamodule,
        ("val", "test"),
        run_dir,
        {"checkpoint": graded},
        metrics_csv=run_dir / "metrics.csv",
        settings=settings,
        decision_offsets=model.decision_offsets.cpu().numpy(),
    )


def resume_checkpoint(ckpt_path: str | None, checkpoint_dir: Path) -> str | None:
    """The checkpoint to resume from: ``last`` means ``last.ckpt`` of this run directory.

    Raises:
        FileNotFoundError: ``last`` was asked for and the run directory has no ``last.ckpt``.
    """
    if ckpt_path != "last":
        return ckpt_path
    last = checkpoint_dir / "last.ckpt"
    if not last.is_file():
        raise FileNotFoundError(
            f"ckpt_path=last: no {last}. Pass the interrupted run's directory, e.g. "
            "`python -m scalp_ml.train ckpt_path=last hydra.run.dir=outputs/<date>/<time>` "
            "with the same overrides as the interrupted run."
        )
    log.info("Resuming from %s", last)
    return str(last)


def _record_dir(run_dir: Path, ckpt_path: str | None) -> Path:
    """Where a run records itself: a resume gets ``resumes/<UTC time>/``, keeping the original."""
    if ckpt_path is None or not (run_dir / "run_info.json").is_file():
        return run_dir
    return run_dir / "resumes" / datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S-%f")


def apply_speed_switches(model: ScalpGrader, speed: DictConfig) -> None:
    """Channels-last memory layout and ``torch.compile`` of the network, as configured."""
    if speed.channels_last:
        model.to(memory_format=torch.channels_last)
    if speed.compile:
        model.net.compile()  # in place: state-dict keys (and checkpoints) stay the same


def _sweep_group() -> str | None:
    """Name shared by the jobs of one Hydra multirun (``None`` outside a multirun)."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return "sweep-" + "_".join(Path(HydraConfig.get().sweep.dir).parts[-2:])
