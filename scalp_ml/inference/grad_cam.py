"""Grad-CAM heat-maps: where the model looked for each indicator's predicted grade."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import matplotlib.pyplot as plt
import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from scalp_ml.labels import GRADES, INDICATOR_NAMES
from scalp_ml.models.network import MultiHeadClassifier


class HeadLogits(nn.Module):
    """One indicator's four logits: grad-cam needs a model with a single output."""

    def __init__(self, net: MultiHeadClassifier, indicator: int) -> None:
        super().__init__()
        self.net = net
        self.indicator = indicator

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, 4]`` of the chosen indicator."""
        return self.net(images)[:, self.indicator]


def last_feature_layer(net: MultiHeadClassifier) -> nn.Module:
    """The backbone's deepest feature stage, as timm's ``feature_info`` names it."""
    return net.backbone.get_submodule(net.backbone.feature_info[-1]["module"])


def grad_cam_maps(
    net: MultiHeadClassifier, image: torch.Tensor, grades: Sequence[int]
) -> np.ndarray:
    """Heat-maps ``[6, S, S]`` in [0, 1], one per indicator, for its grade in ``grades``.

    Args:
        net: The grading network (eval mode).
        image: One normalised, letterboxed image ``[1, 3, S, S]``.
        grades: The grade to explain for each indicator (usually the predicted one).
    """
    layer = last_feature_layer(net)
    maps = []
    for indicator, grade in enumerate(grades):
        with GradCAM(model=HeadLogits(net, indicator), target_layers=[layer]) as cam:
            maps.append(cam(input_tensor=image, targets=[ClassifierOutputTarget(int(grade))])[0])
    return np.stack(maps)


def unletterbox(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """Crops the letterbox padding off a square map and resizes it onto the original photo."""
    side = heatmap.shape[0]
    scale = side / max(height, width)
    inner_h, inner_w = round(height * scale), round(width * scale)
    top, left = (side - inner_h) // 2, (side - inner_w) // 2
    inner = heatmap[top : top + inner_h, left : left + inner_w]
    return cv2.resize(inner, (width, height), interpolation=cv2.INTER_LINEAR)


def explanation_figure(
    photo: np.ndarray, maps: np.ndarray, probabilities: np.ndarray, title: str
) -> plt.Figure:
    """2x3 grid: each indicator's heat-map over the photograph, titled with grade and probability.

    Args:
        photo: The original RGB photograph, uint8 ``[H, W, 3]``.
        maps: Heat-maps ``[6, H, W]`` at the photograph's size.
        probabilities: Grade probabilities ``[6, 4]``.
        title: Figure title (usually the file name).
    """
    figure, axes = plt.subplots(2, 3, figsize=(15, 8.4), constrained_layout=True)
    for axis, name, heatmap, probs in zip(
        axes.flat, INDICATOR_NAMES, maps, probabilities, strict=True
    ):
        grade = int(probs.argmax())
        axis.imshow(show_cam_on_image(photo.astype(np.float32) / 255, heatmap, use_rgb=True))
        axis.set_title(f"{name}: {grade} {GRADES[grade]} ({probs[grade]:.2f})")
        axis.axis("off")
    figure.suptitle(title)
    return figure
