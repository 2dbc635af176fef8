import numpy as np
import torch

from scalp_ml.inference.grad_cam import grad_cam_maps, unletterbox
from scalp_ml.models.network import MultiHeadClassifier


def test_maps_have_the_input_size_and_differ_between_indicators() -> None:
    torch.manual_seed(0)
    net = MultiHeadClassifier("test_efficientnet").eval()
    image = torch.randn(1, 3, 96, 96)
    maps = grad_cam_maps(net, image, [0, 1, 2, 3, 0, 1])
    assert maps.shape == (6, 96, 96)
    assert maps.min() >= 0 and maps.max() <= 1
    assert all(not np.allclose(maps[0], other, atol=1e-3) for other in maps[1:])


def test_unletterbox_puts_the_map_back_on_the_photo() -> None:
    side, height, width = 64, 480, 640
    heatmap = np.zeros((side, side), np.float32)
    heatmap[8:56] = 1.0  # the letterboxed photo fills rows 8..55 of the square
    heatmap[8:56, 32:] = 0.5  # its right half is cooler
    restored = unletterbox(heatmap, height, width)
    assert restored.shape == (height, width)
    assert restored.min() >= 0.5  # no padding rows leaked in
    assert (
        restored[:, : width // 2 - 10].mean() == 1.0
        and restored[:, -width // 2 + 10 :].mean() == 0.5
    )
