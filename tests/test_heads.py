import pytest
import torch
from coral_pytorch.dataset import corn_label_from_logits

from scalp_ml.models.heads import GradeHeads, grade_probabilities


def _outputs(width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(64, 6, width, generator=generator) * 4


@pytest.mark.parametrize(("kind", "width"), [("softmax", 4), ("corn", 3)])
def test_heads_give_one_output_row_per_indicator(kind: str, width: int) -> None:
    heads = GradeHeads(kind, features=10, dropout=0.1).eval()
    features = torch.randn(5, 10)
    outputs = heads(features)
    assert outputs.shape == (5, 6, width)
    third = heads[2][1]
    torch.testing.assert_close(outputs[:, 2], features @ third.weight.T + third.bias)


def test_softmax_probabilities_are_the_softmax_of_the_logits() -> None:
    logits = _outputs(4)
    expected = torch.exp(logits) / torch.exp(logits).sum(dim=-1, keepdim=True)
    torch.testing.assert_close(grade_probabilities("softmax", logits), expected)


def test_corn_probabilities_are_a_distribution_over_four_grades() -> None:
    probabilities = grade_probabilities("corn", _outputs(3))
    assert probabilities.shape == (64, 6, 4)
    assert (probabilities >= 0).all()
    torch.testing.assert_close(probabilities.sum(dim=-1), torch.ones(64, 6))


def test_corn_exceedance_probabilities_are_the_library_cumulative_products() -> None:
    outputs = _outputs(3)
    probabilities = grade_probabilities("corn", outputs)
    # P(y > k) = 1 - P(y <= k), from our four grade probabilities.
    exceedance = 1 - probabilities.cumsum(dim=-1)[..., :3]
    library = torch.cumprod(torch.sigmoid(outputs.reshape(-1, 3)), dim=1).reshape(64, 6, 3)
    torch.testing.assert_close(exceedance, library, atol=1e-6, rtol=0)
    predicted = (exceedance > 0.5).sum(dim=-1)
    expected = corn_label_from_logits(outputs.reshape(-1, 3)).reshape(64, 6)
    assert torch.equal(predicted, expected)


def test_corn_probabilities_follow_the_chain_rule_on_a_hand_example() -> None:
    # sigmoid(0) = 0.5, sigmoid(log 3) = 0.75: P(y>0) = .5, P(y>1) = .375, P(y>2) = .1875.
    outputs = torch.tensor([0.0, torch.log(torch.tensor(3.0)), 0.0]).expand(1, 6, 3)
    expected = torch.tensor([0.5, 0.125, 0.1875, 0.1875]).expand(1, 6, 4)
    torch.testing.assert_close(grade_probabilities("corn", outputs), expected)


def test_unknown_kinds_and_wrong_widths_are_refused() -> None:
    with pytest.raises(ValueError, match="softmax, corn"):
        GradeHeads("coral", features=4)
    with pytest.raises(ValueError, match="softmax, corn"):
        grade_probabilities("ordinal", _outputs(3))
    with pytest.raises(ValueError, match="3 outputs"):
        grade_probabilities("corn", _outputs(4))
