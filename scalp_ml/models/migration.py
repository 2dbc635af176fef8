"""Checkpoints written by earlier versions of scalp_ml, brought to today's layout on load.

Version 1 (before November 2026's "one road" change) nested the hyper-parameters in ``model``,
``optimizer`` (with a ``_target_``) and ``loss`` dicts, and normalised images in the data
pipeline (``mean``/``std`` among the datamodule's settings). Version 2 gives the module typed
plain arguments and keeps the normalisation inside the network as buffers. Version 3 adds the
decision offsets (a ``[6, 4]`` buffer, zeros unless fitted).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 3
VERSION_KEY = "scalp_ml_checkpoint_version"
DROPPED_DATA_SETTINGS = ("mean", "std", "normalize_on_device")


def migrate(checkpoint: dict[str, Any], source: str) -> None:
    """Upgrades a loaded checkpoint dict in place (nothing to do for the current version).

    Args:
        checkpoint: What ``torch.load`` returned.
        source: The file it came from, for the log.
    """
    version = checkpoint.get(VERSION_KEY, 1)
    if version >= CHECKPOINT_VERSION:
        return
    if version < 2:
        _to_version_2(checkpoint)
    checkpoint["state_dict"].setdefault("decision_offsets", torch.zeros(6, 4))
    checkpoint[VERSION_KEY] = CHECKPOINT_VERSION
    log.info("%s was written by an earlier scalp_ml: its layout was upgraded on load", source)


def _to_version_2(checkpoint: dict[str, Any]) -> None:
    """Typed hyper-parameters; the normalisation moves from the data settings to buffers."""
    hparams = checkpoint["hyper_parameters"]
    data = checkpoint.get("datamodule_hyper_parameters", {})
    if "model" in hparams:
        model, optimizer, loss = hparams["model"], hparams["optimizer"], hparams["loss"]
        checkpoint["hyper_parameters"] = {
            "backbone": model["backbone"],
            "dropout": model.get("dropout", 0.0),
            "mean": list(data.get("mean", (0.485, 0.456, 0.406))),
            "std": list(data.get("std", (0.229, 0.224, 0.225))),
            "optimizer": optimizer["_target_"].rsplit(".", 1)[-1].lower(),
            "lr": optimizer["lr"],
            "weight_decay": optimizer.get("weight_decay", 0.0),
            "loss": "focal",
            "gamma": loss.get("gamma", 2.0),
        }
    state = checkpoint["state_dict"]
    for key in ("mean", "std"):
        values = checkpoint["hyper_parameters"][key]
        state.setdefault(
            f"net.{key}", 255 * torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1)
        )
    for key in DROPPED_DATA_SETTINGS:
        data.pop(key, None)
