"""timm backbones: the architecture alone, and pretrained weights loaded into it on request.

Building a network never fetches weights, so a checkpoint loads anywhere, offline included;
training asks for ImageNet weights (from the Hugging Face hub or a local file) explicitly.
"""

from __future__ import annotations

import logging
from pathlib import Path

import timm
from torch import nn

log = logging.getLogger(__name__)


def create_backbone(name: str) -> nn.Module:
    """A timm architecture without classifier and without weights: pooled features out.

    Raises:
        ValueError: Unknown architecture (the message lists similar names).
    """
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:12]
        raise ValueError(f"Unknown timm backbone '{name}'. Similar names: {close}")
    return timm.create_model(name, pretrained=False, num_classes=0)


def load_pretrained_weights(
    backbone: nn.Module, name: str, pretrained: bool = False, weights: str | None = None
) -> None:
    """Loads timm's ImageNet weights of ``name`` into ``backbone`` (built by create_backbone).

    Weights come through timm's own loader (``create_model(pretrained=True)``), which drops
    the classifier and adapts checkpoint layouts.

    Args:
        backbone: The architecture to fill.
        name: Its timm name.
        pretrained: Download the weights from the Hugging Face hub.
        weights: A local ``.safetensors``/``.pth`` file of timm weights (offline clusters);
            takes precedence over ``pretrained``. Neither: nothing is loaded.

    Raises:
        FileNotFoundError: ``weights`` names no file.
        ValueError: ``weights`` do not fit the architecture.
        RuntimeError: The hub's weights could not be downloaded (the message says what to do).
    """
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model.weights={path}: no such file")
        try:
            source = timm.create_model(
                name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(path)}
            )
        except RuntimeError as error:
            first_line = str(error).splitlines()[0]
            raise ValueError(f"model.weights={path} does not fit '{name}': {first_line}") from error
        log.info("Loaded %s weights from %s", name, path)
    elif pretrained:
        try:
            source = timm.create_model(name, pretrained=True, num_classes=0)
        except OSError as error:  # the hub's connection and missing-file errors are OSErrors
            raise RuntimeError(
                f"Could not fetch ImageNet weights of '{name}' from the Hugging Face hub "
                f"({type(error).__name__}). Offline? Save timm's weights file on a connected "
                "machine and pass model.weights=/path/to/file.safetensors, or train from "
                "scratch with model.pretrained=false."
            ) from error
        log.info("Loaded %s ImageNet weights from the hub", name)
    else:
        return
    backbone.load_state_dict(source.state_dict())
