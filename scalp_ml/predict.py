"""Prediction entry: ``python -m scalp_ml.predict ckpt_path=<.ckpt|.onnx> inputs=<file|dir|glob>``.

Letterboxes like training, grades in batches, prints a table and writes ``predictions.csv``
(one row per image and indicator) and ``predictions.json``. ``explain=true`` also writes one
Grad-CAM figure per image. An unreadable image becomes an error row; the others are graded.
See :mod:`scalp_ml.inference.prediction`.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

import scalp_ml.config  # noqa: F401  (registers the config schemas)
from scalp_ml.cli import CONF_DIR, run_command


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="predict")
def main(cfg: DictConfig) -> None:
    """Hydra entry."""
    from scalp_ml.config import plain
    from scalp_ml.inference.prediction import predict

    predict(
        cfg.ckpt_path,
        cfg.inputs,
        Path(cfg.out_dir),
        cfg.explain,
        plain(cfg.device),
        cfg.batch_size,
        cfg.threads,
        plain(cfg.tta),
    )


def cli() -> None:
    """Console script (and ``python -m``): the command, or its help with ``--help``."""
    run_command(main, "predict")


if __name__ == "__main__":
    cli()
