import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from coral_pytorch.losses import corn_loss

from scalp_ml.models.losses import (
    FocalLoss,
    build_loss,
    check_head,
    class_balanced_weights,
    grade_priors,
)
from scalp_ml.reference import GRADE_COUNTS


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


# Training-split grade counts [6, 4]: the study's, with pustule grade 3 absent.
COUNTS = GRADE_COUNTS.copy()
COUNTS[3, 3] = 0
ALL_PRESENT = COUNTS + 1


def _batch(size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(size, 6, 4, generator=generator) * 3
    grades = torch.randint(0, 4, (size, 6), generator=generator)
    return logits, grades


def _shifted_cross_entropy(logits: torch.Tensor, grades: torch.Tensor, shift: np.ndarray) -> float:
    shifted = logits + torch.from_numpy(shift).float()
    return F.cross_entropy(shifted.reshape(-1, 4), grades.reshape(-1)).item()


def _hand_focal_terms(logits: torch.Tensor, grades: torch.Tensor, gamma: float) -> np.ndarray:
    terms = np.zeros(grades.shape)
    for image, head in np.ndindex(*grades.shape):
        row = logits[image, head].double().tolist()
        p = math.exp(row[grades[image, head]]) / sum(math.exp(v) for v in row)
        terms[image, head] = -((1 - p) ** gamma) * math.log(p)
    return terms


def _hand_class_balanced_weights(counts: np.ndarray, beta: float) -> np.ndarray:
    weights = np.zeros((6, 4))
    for indicator in range(6):
        raw = [(1 - beta) / (1 - beta**n) if n > 0 else 0.0 for n in counts[indicator]]
        weights[indicator] = [4 * w / sum(raw) for w in raw]
    return weights


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0])
def test_logit_adjusted_is_cross_entropy_on_prior_shifted_logits(tau: float) -> None:
    logits, grades = _batch()
    priors = ALL_PRESENT / ALL_PRESENT.sum(axis=1, keepdims=True)
    expected = _shifted_cross_entropy(logits, grades, tau * np.log(priors))
    loss = build_loss("logit_adjusted", ALL_PRESENT, tau=tau)(logits, grades)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_balanced_softmax_is_logit_adjustment_with_tau_one() -> None:
    logits, grades = _batch()
    priors = ALL_PRESENT / ALL_PRESENT.sum(axis=1, keepdims=True)
    expected = _shifted_cross_entropy(logits, grades, np.log(priors))
    balanced = build_loss("balanced_softmax", ALL_PRESENT, tau=5.0)(logits, grades)
    adjusted = build_loss("logit_adjusted", ALL_PRESENT, tau=1.0)(logits, grades)
    assert balanced.item() == pytest.approx(expected, rel=1e-5)
    assert balanced.item() == pytest.approx(adjusted.item(), rel=1e-6)


def test_an_absent_grade_gets_the_prior_of_one_image() -> None:
    floored = np.maximum(COUNTS, 1)
    expected = floored / floored.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(grade_priors(COUNTS).numpy(), expected, rtol=1e-6)


def test_ce_is_cross_entropy_and_focal_is_the_study_loss() -> None:
    logits, grades = _batch()
    expected_ce = F.cross_entropy(logits.reshape(-1, 4), grades.reshape(-1)).item()
    assert build_loss("ce", COUNTS)(logits, grades).item() == pytest.approx(expected_ce, rel=1e-6)
    expected_focal = _hand_focal_terms(logits, grades, 2.0).mean()
    focal = build_loss("focal", COUNTS, gamma=2.0)(logits, grades)
    assert focal.item() == pytest.approx(expected_focal, rel=1e-5)


@pytest.mark.parametrize("beta", [0.9, 0.999, 0.9999])
def test_class_balanced_weights_follow_the_formula(beta: float) -> None:
    weights = class_balanced_weights(COUNTS, beta).numpy()
    np.testing.assert_allclose(weights, _hand_class_balanced_weights(COUNTS, beta), rtol=1e-5)
    assert weights[3, 3] == 0  # the absent grade
    np.testing.assert_allclose(weights.sum(axis=1), 4.0, rtol=1e-6)


def test_class_balanced_focal_weights_each_term_by_its_true_grade() -> None:
    logits, grades = _batch()
    weights = _hand_class_balanced_weights(COUNTS, 0.99)
    terms = _hand_focal_terms(logits, grades, 2.0)
    expected = (terms * weights[np.arange(6), grades.numpy()]).mean()
    loss = build_loss("class_balanced_focal", COUNTS, gamma=2.0, beta=0.99)(logits, grades)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_class_balanced_focal_with_beta_zero_is_focal() -> None:
    logits, grades = _batch()
    balanced = build_loss("class_balanced_focal", ALL_PRESENT, gamma=2.0, beta=0.0)
    assert balanced(logits, grades).item() == pytest.approx(
        FocalLoss(gamma=2.0)(logits, grades).item(), rel=1e-6
    )


def test_deferred_reweighting_switches_the_weights_on_at_drw_epoch() -> None:
    logits, grades = _batch()
    unweighted = FocalLoss(gamma=2.0)(logits, grades).item()
    weighted = build_loss("class_balanced_focal", COUNTS, beta=0.999)(logits, grades).item()
    assert weighted != pytest.approx(unweighted, rel=1e-3)
    drw = build_loss("class_balanced_focal", COUNTS, beta=0.999, drw_epoch=3)
    for epoch, expected in [(0, unweighted), (2, unweighted), (3, weighted), (7, weighted)]:
        drw.set_epoch(epoch)
        assert drw(logits, grades).item() == pytest.approx(expected, rel=1e-6), epoch


def test_priors_and_class_weights_travel_in_the_state_dict() -> None:
    adjusted = build_loss("logit_adjusted", COUNTS)
    assert torch.equal(adjusted.state_dict()["priors"], grade_priors(COUNTS))
    restored = build_loss("logit_adjusted", np.ones((6, 4)))
    restored.load_state_dict(adjusted.state_dict())
    assert torch.equal(restored.priors, adjusted.priors)
    balanced = build_loss("class_balanced_focal", COUNTS, beta=0.99)
    assert torch.equal(balanced.state_dict()["class_weights"], class_balanced_weights(COUNTS, 0.99))
    assert list(FocalLoss().state_dict()) == []


@pytest.mark.parametrize("name", ["logit_adjusted", "balanced_softmax", "class_balanced_focal"])
def test_gradients_stay_finite_when_a_grade_has_no_training_image(name: str) -> None:
    logits, grades = _batch()
    grades[:, 3] = 3  # every image has the grade absent from the counts
    logits.requires_grad_(True)
    loss = build_loss(name, COUNTS, tau=2.0)(logits, grades)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_corn_loss_is_the_library_loss_averaged_over_heads() -> None:
    generator = torch.Generator().manual_seed(1)
    outputs = torch.randn(16, 6, 3, generator=generator)
    grades = torch.randint(0, 4, (16, 6), generator=generator)
    expected = sum(corn_loss(outputs[:, h], grades[:, h], num_classes=4) for h in range(6)) / 6
    loss = build_loss("corn", COUNTS)(outputs, grades)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_head_output_width_that_does_not_fit_the_loss_is_refused() -> None:
    logits, grades = _batch()
    with pytest.raises(ValueError, match="CORN head"):
        build_loss("focal", COUNTS)(logits[..., :3], grades)
    with pytest.raises(ValueError, match="CORN head"):
        build_loss("corn", COUNTS)(logits, grades)


def test_unknown_names_and_bad_parameters_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="focal, ce, logit_adjusted, balanced_softmax"):
        build_loss("ldam", COUNTS)
    with pytest.raises(ValueError, match="drw_epoch"):
        build_loss("focal", COUNTS, drw_epoch=2)
    with pytest.raises(ValueError, match=r"\[6, 4\]"):
        build_loss("focal", COUNTS[:5])
    with pytest.raises(ValueError, match=">= 0"):
        build_loss("focal", -COUNTS)
    with pytest.raises(ValueError, match="all zero"):
        build_loss("ce", np.vstack([COUNTS[:5], np.zeros((1, 4))]))
    with pytest.raises(ValueError, match="beta"):
        build_loss("class_balanced_focal", COUNTS, beta=1.0)


def test_only_losses_with_priors_or_weights_need_grade_counts() -> None:
    for name in ("logit_adjusted", "balanced_softmax", "class_balanced_focal"):
        with pytest.raises(ValueError, match=f"loss '{name}' needs the training split's grade"):
            build_loss(name)
    logits, grades = _batch()
    for name in ("focal", "ce"):
        assert build_loss(name)(logits, grades) == build_loss(name, COUNTS)(logits, grades)
    assert build_loss("corn")(logits[..., :3], grades) > 0


@pytest.mark.parametrize(
    ("head", "loss", "fits"),
    [
        ("softmax", "focal", True),
        ("corn", "corn", True),
        ("corn", "ce", False),
        ("softmax", "corn", False),
    ],
)
def test_the_corn_head_goes_with_the_corn_loss_only(head: str, loss: str, fits: bool) -> None:
    if fits:
        check_head(loss, head)
    else:
        with pytest.raises(ValueError, match=rf"model\.head={head} does not fit loss={loss}"):
            check_head(loss, head)
