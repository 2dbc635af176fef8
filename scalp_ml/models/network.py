"""One timm backbone shared by six independent grading heads: logits of shape ``[B, 6, 4]``."""

from __future__ import annotations

import logging
from pathlib import Path

import timm
import torch
from torch import nn

from scalp_ml.labels import NUM_GRADES, NUM_INDICATORS

log = logging.getLogger(__name__)


def create_backbone(name: str, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    """A timm model without classifier, returning pooled features of width ``num_features``.

    Args:
        name: timm architecture name, e.g. ``efficientnet_b4``.
        pretrained: Download timm's ImageNet weights from the Hugging Face hub.
        weights: Local ``.safetensors``/``.pth`` file of timm weights, loaded through timm's
            own mechanism (for offline clusters); takes precedence over ``pretrained``.

    Raises:
        ValueError: Unknown architecture, or ``weights`` that do not fit it.
        FileNotFoundError: ``weights`` names no file.
        RuntimeError: ``pretrained`` weights could not be downloaded.
    """
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:12]
        raise ValueError(f"Unknown timm backbone '{name}'. Similar names: {close}")
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model.weights={path}: no such file")
        try:
            backbone = timm.create_model(
                name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(path)}
            )
        except RuntimeError as error:
            first_line = str(error).splitlines()[0]
            raise ValueError(f"model.weights={path} does not fit '{name}': {first_line}") from error
        log.info("Loaded %s weights from %s", name, path)
        return backbone
    if pretrained:
        try:
            backbone = timm.create_model(name, pretrained=True, num_classes=0)
        except OSError as error:  # the hub's connection and missing-file errors are OSErrors
            raise RuntimeError(
                f"Could not fetch ImageNet weights of '{name}' from the Hugging Face hub "
                f"({type(error).__name__}). Offline? Save timm's weights file on a connected "
                "machine and pass model.weights=/path/to/file.safetensors, or train from "
                "scratch with model.pretrained=false."
            ) from error
        log.info("Loaded %s ImageNet weights from the hub", name)
        return backbone
    return timm.create_model(name, pretrained=False, num_classes=0)


class MultiHeadClassifier(nn.Module):
    """Shared backbone, then one dropout + linear head of four grade logits per indicator.

    Args:
        backbone: timm architecture name.
        pretrained: See :func:`create_backbone`.
        weights: See :func:`create_backbone`.
        dropout: Dropout before each head.
    """

    def __init__(
        self,
        backbone: str,
        pretrained: bool = False,
        weights: str | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone, pretrained, weights)
        features = self.backbone.num_features
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Dropout(dropout), nn.Linear(features, NUM_GRADES))
            for _ in range(NUM_INDICATORS)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Grade logits ``[B, 6, 4]`` for normalised images ``[B, 3, H, W]``."""
        features = self.backbone(images)
        return torch.stack([head(features) for head in self.heads], dim=1)
