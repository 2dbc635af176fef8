import pytest
import torch
from torch import nn

from scalp_ml.models.tta import TTA_MODES, ViewAveraging, views


class PooledProbabilities(nn.Module):
    """Mean colour to 6x4 probabilities: blind to any mirror or rotation."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 24)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.float().mean(dim=(-2, -1))).view(-1, 6, 4).softmax(-1)


class LeftHalf(nn.Module):
    """Looks at the left half only: a mirror changes its answer."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        left = images.float()[..., : images.shape[-1] // 2].mean(dim=(1, 2, 3))
        logits = torch.stack([left * k / 255 for k in range(24)], dim=-1)
        return logits.view(-1, 6, 4).softmax(-1)


@pytest.mark.parametrize("mode", TTA_MODES)
def test_tta_of_a_flip_invariant_model_equals_no_tta(mode: str) -> None:
    torch.manual_seed(0)
    model = PooledProbabilities()
    images = torch.randint(0, 256, (3, 3, 12, 16), dtype=torch.uint8)
    torch.testing.assert_close(ViewAveraging(model, mode)(images), model(images))


def test_hflip_averages_the_image_and_its_mirror() -> None:
    model = LeftHalf()
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    expected = (model(images) + model(images.flip(-1))) / 2
    torch.testing.assert_close(ViewAveraging(model, "hflip")(images), expected)
    assert not torch.allclose(expected, model(images))


def test_views_are_the_symmetries_of_the_square() -> None:
    image = torch.arange(9).view(1, 1, 3, 3)
    counts = {"none": 1, "hflip": 2, "flip4": 4, "d4": 8}
    for mode, count in counts.items():
        found = views(image, mode)
        assert len(found) == count
        assert len({tuple(view.flatten().tolist()) for view in found}) == count  # all distinct
    with pytest.raises(ValueError, match="expected one of"):
        ViewAveraging(LeftHalf(), "rot90")
