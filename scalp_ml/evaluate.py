"""Evaluation entry: ``python -m scalp_ml.evaluate ckpt_path=<.ckpt|.onnx> [split=test]``.

Grades one split of the data a checkpoint (or its ONNX export) was trained on, through
Lightning's prediction loop with the training pipeline's images (never augmented), and writes
the report: the study's Table 2 layout, the majority baseline, per-grade detail, figures and
``predictions_<split>.csv``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import scalp_ml.config  # noqa: F401  (registers the config schemas)
from scalp_ml.cli import CONF_DIR, run_command


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg: DictConfig) -> None:
    """Hydra entry."""
    from scalp_ml.evaluation.command import evaluate

    evaluate(cfg)


def cli() -> None:
    """Console script (and ``python -m``): the command, or its help with ``--help``."""
    run_command(main, "eval")


if __name__ == "__main__":
    cli()
