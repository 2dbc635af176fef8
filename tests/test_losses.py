import math

import pytest
import torch
import torch.nn.functional as F

from scalp_ml.models.losses import FocalLoss


def test_matches_the_focal_formula_on_hand_built_logits() -> None:
    logits = torch.tensor([[[2.0, 0.0, -1.0, 0.5]], [[0.0, 0.0, 0.0, 0.0]]])
    grades = torch.tensor([[0], [3]])
    expected = []
    for row, grade in ((logits[0, 0], 0), (logits[1, 0], 3)):
        p = math.exp(row[grade]) / sum(math.exp(v) for v in row)
        expected.append(-((1 - p) ** 2) * math.log(p))
    loss = FocalLoss(gamma=2.0)(logits, grades)
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-6)


def test_gamma_zero_is_cross_entropy() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 6, 4, generator=generator)
    grades = torch.randint(0, 4, (8, 6), generator=generator)
    expected = F.cross_entropy(logits.reshape(-1, 4), grades.reshape(-1))
    assert FocalLoss(gamma=0.0)(logits, grades).item() == pytest.approx(expected.item(), rel=1e-6)


def test_focusing_down_weights_easy_examples() -> None:
    easy = torch.tensor([[[6.0, 0.0, 0.0, 0.0]]])
    grades = torch.tensor([[0]])
    assert FocalLoss(2.0)(easy, grades) < FocalLoss(0.0)(easy, grades) / 100


def test_negative_gamma_is_refused() -> None:
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1.0)
