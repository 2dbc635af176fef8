import numpy as np
import torch

from scalp_ml.data.images import unletterbox
from scalp_ml.inference.grad_cam import GradeScores, grad_cam_maps
from scalp_ml.models.network import GradeProbabilities, GradingNetwork


def test_maps_have_the_input_size_differ_between_indicators_and_batch() -> None:
    torch.manual_seed(0)
    net = GradingNetwork("test_efficientnet").eval()
    images = torch.randint(0, 256, (2, 3, 96, 96), dtype=torch.uint8)
    grades = np.array([[0, 1, 2, 3, 0, 1], [3, 2, 1, 0, 3, 2]])
    maps = grad_cam_maps(net, images, grades)
    assert maps.shape == (2, 6, 96, 96)
    assert maps.min() >= 0 and maps.max() <= 1
    assert all(not np.allclose(maps[0, 0], other, atol=1e-3) for other in maps[0, 1:])
    alone = grad_cam_maps(net, images[1:], grades[1:])  # a batch gives each image its own map
    np.testing.assert_allclose(alone[0], maps[1], atol=1e-5)


def test_a_corn_network_explains_each_grade_by_its_probability() -> None:
    torch.manual_seed(0)
    net = GradingNetwork("test_efficientnet", head="corn").eval()
    images = torch.randint(0, 256, (2, 3, 96, 96), dtype=torch.uint8)
    with torch.no_grad():
        scores = GradeScores(net, indicator=2)(images)
        torch.testing.assert_close(scores, GradeProbabilities(net)(images)[:, 2])
    maps = grad_cam_maps(net, images, np.array([[0, 1, 2, 3, 0, 1], [3, 2, 1, 0, 3, 2]]))
    assert maps.shape == (2, 6, 96, 96) and np.isfinite(maps).all()
    assert maps.min() >= 0 and maps.max() <= 1
    assert all(not np.allclose(maps[0, 0], other, atol=1e-3) for other in maps[0, 1:])


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
