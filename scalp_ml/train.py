"""Training entry: ``python -m scalp_ml.train [model=effnet_b4] [experiment=demo] [key=value ...]``.

Runs :func:`scalp_ml.training.job.train` on the composed config (``--help`` lists the options);
Hydra multirun (``-m``) sweeps and Optuna searches call it once per job.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import scalp_ml.config  # noqa: F401  (registers the config schemas)
from scalp_ml.cli import CONF_DIR, run_command


def train(cfg: DictConfig) -> dict[str, float]:
    """Runs one training job; returns the best checkpoint's validation and test metrics."""
    from scalp_ml.training.job import train as run_job

    return run_job(cfg)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float:
    """Hydra entry; returns the monitored metric (with cross_validate: the folds' mean)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.get().mode == RunMode.MULTIRUN:
        from scalp_ml.training.distributed import refuse_distributed_multirun

        refuse_distributed_multirun(cfg.trainer)
    if cfg.cross_validate:
        from scalp_ml.training.cross_validation import cross_validate

        return cross_validate(cfg, train)[cfg.monitor.metric]
    return train(cfg)[cfg.monitor.metric]


def cli() -> None:
    """Console script (and ``python -m``): the command, or its help with ``--help``."""
    run_command(main, "train")


if __name__ == "__main__":
    cli()
