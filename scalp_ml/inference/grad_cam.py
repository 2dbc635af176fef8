"""Grad-CAM heat-maps: where the model looked for each indicator's predicted grade."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from scalp_ml.labels import GRADES, INDICATOR_NAMES
from scalp_ml.models.network import GradingNetwork

COLORMAP = "jet"
SCALE = "Grad-CAM relevance for the predicted grade (0: none, 1: the map's maximum)"


class GradeScores(nn.Module):
    """One indicator's four grade scores: grad-cam needs a model with a single output.

    The score explained for a grade is its logit with the softmax head, its probability with
    the CORN head (whose outputs are conditional ``P(y > k | y > k - 1)`` logits, one fewer
    than the grades).
    """

    def __init__(self, net: GradingNetwork, indicator: int) -> None:
        super().__init__()
        self.net = net
        self.indicator = indicator

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, 4]`` of the chosen indicator's grades."""
        outputs = self.net(images)[:, self.indicator]
        return outputs if self.net.head == "softmax" else self.net.probabilities(outputs)


def last_feature_layer(net: GradingNetwork) -> nn.Module:
    """The backbone's deepest feature stage, as timm's ``feature_info`` names it."""
    return net.backbone.get_submodule(net.backbone.feature_info[-1]["module"])


def grad_cam_maps(net: GradingNetwork, images: torch.Tensor, grades: np.ndarray) -> np.ndarray:
    """Heat-maps ``[B, 6, H, W]`` in [0, 1]: each indicator's, for its grade in ``grades``.

    One batched Grad-CAM pass per indicator.

    Args:
        net: The grading network (eval mode).
        images: Letterboxed images ``[B, 3, H, W]`` as the network takes them.
        grades: The grade to explain per image and indicator ``[B, 6]`` (usually the
            predicted one).
    """
    layer = last_feature_layer(net)
    inputs = images.float()  # Grad-CAM differentiates through the network's first layers
    maps = []
    for indicator in range(len(INDICATOR_NAMES)):
        targets = [ClassifierOutputTarget(int(grade)) for grade in grades[:, indicator]]
        with GradCAM(model=GradeScores(net, indicator), target_layers=[layer]) as cam:
            maps.append(cam(input_tensor=inputs, targets=targets))
    return np.stack(maps, axis=1)


def explanation_figure(
    photo: np.ndarray, maps: np.ndarray, probabilities: np.ndarray, title: str
) -> plt.Figure:
    """The photograph, then each indicator's heat-map over it, and the colour scale.

    Args:
        photo: The original RGB photograph, uint8 ``[H, W, 3]``.
        maps: Heat-maps ``[6, H, W]`` in [0, 1] at the photograph's size.
        probabilities: Grade probabilities ``[6, 4]``.
        title: Figure title (usually the file's path).
    """
    figure, axes = plt.subplots(2, 4, figsize=(16, 6.6), constrained_layout=True)
    panels = axes.flat
    photo_axis = next(panels)
    photo_axis.imshow(photo)
    photo_axis.set_title("photograph")
    for axis, name, heatmap, probs in zip(
        panels, INDICATOR_NAMES, maps, probabilities, strict=False
    ):
        grade = int(probs.argmax())
        axis.imshow(photo)
        axis.imshow(heatmap, cmap=COLORMAP, vmin=0, vmax=1, alpha=0.45)
        axis.set_title(f"{name}: {grade} {GRADES[grade]} (p={probs[grade]:.2f})", fontsize=10)
    for axis in axes.flat:
        axis.axis("off")
    scale = ScalarMappable(Normalize(0, 1), cmap=COLORMAP)
    figure.colorbar(scale, ax=axes[:, -1], location="right", fraction=0.5, label=SCALE)
    figure.suptitle(title)
    return figure
