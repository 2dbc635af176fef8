"""Training entry: ``python -m scalp_ml.train [model=effnet_b4] [experiment=demo] [key=value ...]``.

Fits on the train split, keeps the checkpoint with the best validation macro-F1, evaluates it
on the validation and test splits and writes the report into the run directory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from scalp_ml.data.datamodule import ScalpDataModule
from scalp_ml.evaluate import write_evaluation
from scalp_ml.module import ScalpGrader
from scalp_ml.run_info import record_run

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Runs one training job from a composed config.

    Returns:
        Scalar validation and test metrics of the best checkpoint (``val/macro_f1``, ...).
    """
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = ScalpDataModule(**OmegaConf.to_container(cfg.data, resolve=True))
    datamodule.prepare_data()
    record_run(run_dir, cfg, datamodule.split_file)
    model = ScalpGrader(**_plain(cfg, "model", "optimizer", "loss"))
    trainer = L.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        default_root_dir=run_dir,
        callbacks=[instantiate(callback) for callback in cfg.callbacks.values()],
        logger=[instantiate(logger) for logger in (cfg.logger or {}).values()] or False,
    )
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if not best:
        log.warning("No best checkpoint was saved; evaluating the weights as they are")
    checkpoint = best or None
    trainer.validate(model, datamodule=datamodule, ckpt_path=checkpoint, verbose=False)
    trainer.test(model, datamodule=datamodule, ckpt_path=checkpoint, verbose=False)
    checkpoint_name = best or "(none: final weights)"
    report = write_evaluation(
        run_dir, datamodule, model.results, checkpoint_name, run_dir / "metrics.csv"
    )
    log.info("Report written to %s", report)
    return {
        f"{stage}/{key}": float(value)
        for stage, values in model.results.items()
        for key, value in values.items()
        if value.ndim == 0
    }


def _plain(cfg: DictConfig, *groups: str) -> dict[str, Any]:
    """The named config groups as plain, resolved containers (safe in checkpoints)."""
    return {group: OmegaConf.to_container(cfg[group], resolve=True) for group in groups}


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Hydra entry; returns the monitored metric (for sweepers)."""
    return train(cfg)[cfg.monitor.metric]


if __name__ == "__main__":
    main()
