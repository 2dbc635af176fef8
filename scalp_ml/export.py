"""Export entry: ``python -m scalp_ml.export ckpt_path=... [format=onnx|torchscript|safetensors]``.

``ckpt_path=[a.ckpt,b.ckpt]`` (or a folder of runs) exports an ensemble as one file.

Writes one self-describing file (uint8 letterboxed images in, grade probabilities out) that
``predict`` and ``evaluate`` accept like the checkpoint; ``format=safetensors`` writes portable
weights and a ``config.json`` for plain timm instead; see :mod:`scalp_ml.inference.export`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import scalp_ml.config  # noqa: F401  (registers the config schemas)
from scalp_ml.cli import CONF_DIR, run_command


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="export")
def main(cfg: DictConfig) -> None:
    """Hydra entry."""
    from scalp_ml.config import plain
    from scalp_ml.inference.export import export

    export(plain(cfg.ckpt_path), plain(cfg.format), cfg.out, plain(cfg.tta))


def cli() -> None:
    """Console script (and ``python -m``): the command, or its help with ``--help``."""
    run_command(main, "export")


if __name__ == "__main__":
    cli()
