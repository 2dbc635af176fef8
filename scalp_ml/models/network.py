"""The grading network: uint8 images in, six indicators' head outputs out.

The network owns its input normalisation (mean and std as buffers), so the checkpoint, the
exported ONNX file and every command feed it the same letterboxed uint8 images. Its raw outputs
depend on the head kind (:mod:`scalp_ml.models.heads`); :class:`GradeProbabilities` turns them
into grade probabilities ``[B, 6, 4]`` whatever the kind.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.data import resolve_model_data_config
from torch import nn

from scalp_ml.models.backbones import create_backbone
from scalp_ml.models.heads import GradeHeads, grade_probabilities
from scalp_ml.models.tta import ViewAveraging


class GradingNetwork(nn.Module):
    """Normalisation, a shared timm backbone, then one dropout + linear head per indicator.

    Args:
        backbone: timm architecture name.
        dropout: Dropout before each head.
        mean: Per-channel mean of images scaled to [0, 1]; ``None``: the backbone's pretrained
            config (``timm.data.resolve_model_data_config``).
        std: Per-channel standard deviation, likewise.
        head: ``softmax`` (4 grade logits per indicator, the study's) or ``corn`` (3 ordinal
            logits per indicator).
    """

    def __init__(
        self,
        backbone: str,
        dropout: float = 0.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        head: str = "softmax",
    ) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone)
        data_config = resolve_model_data_config(self.backbone)
        mean = data_config["mean"] if mean is None else mean
        std = data_config["std"] if std is None else std
        # Kept on the 0-255 scale of the input, so normalising is one subtract and one divide.
        self.register_buffer("mean", 255 * torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", 255 * torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        # Pooled width: after timm's pre-logits layer where a model has one (MobileNetV3).
        features = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self.heads = GradeHeads(head, features, dropout)

    @property
    def head(self) -> str:
        """The head kind, ``softmax`` or ``corn``."""
        return self.heads.kind

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Raw head outputs ``[B, 6, 4]`` (softmax) or ``[B, 6, 3]`` (corn) of RGB images.

        Args:
            images: Letterboxed ``[B, 3, H, W]``, uint8 or float on the same 0-255 scale
                (device-side augmentation).
        """
        return self.heads(self.backbone((images.float() - self.mean) / self.std))

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        """Grade probabilities ``[B, 6, 4]`` of this network's raw ``outputs``."""
        return grade_probabilities(self.head, outputs)


class GradeProbabilities(nn.Module):
    """A grading network's grade probabilities ``[B, 6, 4]``, whatever its head."""

    def __init__(self, network: GradingNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Grade probabilities of uint8 letterboxed images ``[B, 3, H, W]``."""
        return self.network.probabilities(self.network(images))


class DeployedGrader(nn.Module):
    """The model as exported and served: images to final grade probabilities ``[B, 6, 4]``.

    The network's probabilities, averaged over the test-time augmentation views
    (:mod:`scalp_ml.models.tta`), then shifted by the decision offsets ``[6, 4]`` (added to
    the log-probabilities before a softmax: :mod:`scalp_ml.evaluation.offsets`; zeros change
    nothing). Export writes it and every predictor runs it, so all of them agree.
    """

    def __init__(self, network: GradingNetwork, offsets: torch.Tensor, tta: str = "none") -> None:
        super().__init__()
        self.views = ViewAveraging(GradeProbabilities(network), tta)
        self.offsets = offsets

    @property
    def network(self) -> GradingNetwork:
        """The grading network inside (what ``format=safetensors`` exports)."""
        return self.views.model.network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Final grade probabilities of uint8 letterboxed images ``[B, 3, H, W]``."""
        log_p = self.views(images).clamp_min(1e-12).log()
        return (log_p + self.offsets).softmax(dim=-1)
