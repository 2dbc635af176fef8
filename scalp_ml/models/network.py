"""The grading network: uint8 images in, six indicators' grade logits ``[B, 6, 4]`` out.

The network owns its input normalisation (mean and std as buffers), so the checkpoint, the
exported ONNX file and every command feed it the same letterboxed uint8 images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.data import resolve_model_data_config
from torch import nn

from scalp_ml.labels import NUM_GRADES, NUM_INDICATORS
from scalp_ml.models.backbones import create_backbone


class GradingNetwork(nn.Module):
    """Normalisation, a shared timm backbone, then one dropout + linear head per indicator.

    Args:
        backbone: timm architecture name.
        dropout: Dropout before each head.
        mean: Per-channel mean of images scaled to [0, 1]; ``None``: the backbone's pretrained
            config (``timm.data.resolve_model_data_config``).
        std: Per-channel standard deviation, likewise.
    """

    def __init__(
        self,
        backbone: str,
        dropout: float = 0.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone)
        data_config = resolve_model_data_config(self.backbone)
        mean = data_config["mean"] if mean is None else mean
        std = data_config["std"] if std is None else std
        # Kept on the 0-255 scale of the input, so normalising is one subtract and one divide.
        self.register_buffer("mean", 255 * torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", 255 * torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        features = self.backbone.num_features
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Dropout(dropout), nn.Linear(features, NUM_GRADES))
            for _ in range(NUM_INDICATORS)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Grade logits ``[B, 6, 4]`` of letterboxed RGB images ``[B, 3, H, W]``.

        Args:
            images: uint8, or float on the same 0-255 scale (device-side augmentation).
        """
        features = self.backbone((images.float() - self.mean) / self.std)
        return torch.stack([head(features) for head in self.heads], dim=1)


class GradeProbabilities(nn.Module):
    """The deployed model: a grading network's softmax probabilities ``[B, 6, 4]``.

    What export writes and what every predictor runs, so all of them agree.
    """

    def __init__(self, network: GradingNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Grade probabilities of uint8 letterboxed images ``[B, 3, H, W]``."""
        return self.network(images).float().softmax(dim=-1)
