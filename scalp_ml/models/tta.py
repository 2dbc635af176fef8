"""Test-time augmentation: grade probabilities averaged over mirrored and rotated views.

A scalp close-up has no upright, so every view of the dihedral group is as plausible a
photograph as the original. Views are made inside the model, so the exported ONNX file, the
checkpoint and every command average the same views.
"""

from __future__ import annotations

import torch
from torch import nn

TTA_MODES = ("none", "hflip", "flip4", "d4")


def check_mode(mode: str) -> None:
    """Raises ValueError naming the allowed modes unless ``mode`` is one of them."""
    if mode not in TTA_MODES:
        raise ValueError(f"tta={mode!r}: expected one of {list(TTA_MODES)}")


def views(images: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The images ``[B, C, H, W]`` as the views of ``mode``.

    ``none``: the images; ``hflip``: and their mirror; ``flip4``: and the vertical mirror and
    the half turn; ``d4``: all eight symmetries of the square (with transposes, which swap height
    and width of a rectangular input: the network is fully convolutional).

    Raises:
        ValueError: Unknown mode.
    """
    check_mode(mode)
    found = [images]
    if mode in ("hflip", "flip4", "d4"):
        found.append(images.flip(-1))
    if mode in ("flip4", "d4"):
        found += [images.flip(-2), images.flip(-2, -1)]
    if mode == "d4":
        transposed = images.transpose(-2, -1)
        found += [transposed, transposed.flip(-1), transposed.flip(-2), transposed.flip(-2, -1)]
    return found


class ViewAveraging(nn.Module):
    """Averages a probability model's outputs over the views of ``mode``.

    Args:
        model: Images ``[B, C, H, W]`` to probabilities.
        mode: One of ``TTA_MODES``.
    """

    def __init__(self, model: nn.Module, mode: str = "none") -> None:
        super().__init__()
        check_mode(mode)
        self.model = model
        self.mode = mode

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Mean probabilities over the views."""
        outputs = [self.model(view) for view in views(images, self.mode)]
        return torch.stack(outputs).mean(dim=0)
