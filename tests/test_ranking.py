"""Our rank statistics and average precision against SciPy / scikit-learn as oracles."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import rankdata, spearmanr
from sklearn.metrics import average_precision_score

from crane_lens.stats.kojima import average_precision, average_precision_by_group
from crane_lens.utils.ranking import ranks, spearman


def _tied(generator: torch.Generator, n: int, levels: int) -> torch.Tensor:
    """``n`` values drawn from only ``levels`` distinct ones: many ties."""
    return torch.randint(levels, (n,), generator=generator).double() / levels


def test_spearman_uses_average_ranks_for_ties() -> None:
    # ranks (0.5, 0.5, 2) vs (0, 1, 2): centred dot 1.5 / (sqrt(1.5) · sqrt(2)) = sqrt(3)/2
    rho = spearman(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([1.0, 2.0, 3.0]))
    assert math.isclose(rho, math.sqrt(3) / 2, rel_tol=1e-12)
    assert math.isclose(spearman(torch.arange(5.0), -(torch.arange(5.0) ** 3)), -1.0)


@pytest.mark.parametrize("levels", [3, 10, 1000])
def test_ranks_and_spearman_equal_scipy_on_random_data_with_ties(levels: int) -> None:
    generator = torch.Generator().manual_seed(levels)
    for n in (2, 5, 50, 400):
        a, b = _tied(generator, n, levels), _tied(generator, n, levels)
        b = torch.where(torch.rand(n, generator=generator) < 0.5, a, b)  # correlated
        assert ranks(a).numpy() == pytest.approx(rankdata(a.numpy()) - 1, abs=0)
        expected = spearmanr(a.numpy(), b.numpy()).statistic
        if math.isnan(expected):  # a constant draw (n = 2 with 3 levels)
            assert math.isnan(spearman(a, b))
        else:
            assert spearman(a, b) == pytest.approx(expected, abs=1e-12)


def test_shapes_and_dtypes_are_flattened_like_scipy() -> None:
    a = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    b = a.float() ** 3 + 0.1 * torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    flat_a, flat_b = a.double().flatten().numpy(), b.double().flatten().numpy()
    assert ranks(a).tolist() == (rankdata(flat_a) - 1).tolist()
    assert spearman(a, b) == pytest.approx(spearmanr(flat_a, flat_b).statistic, abs=1e-12)
    with pytest.raises(ValueError, match="equally many"):
        spearman(torch.ones(3), torch.ones(4))


def test_nan_and_constant_inputs_give_nan_as_documented() -> None:
    x = torch.tensor([1.0, float("nan"), 3.0, 2.0])
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert math.isnan(spearman(x, y)) and math.isnan(spearman(y, x))
    assert math.isnan(spearmanr(x.numpy(), y.numpy()).statistic)  # SciPy's propagate policy
    assert torch.isnan(ranks(x)).all()
    assert math.isnan(spearman(torch.ones(4), y))  # constant: no ranking, no warning
    assert math.isnan(spearman(torch.ones(1), torch.ones(1)))
    keep = ~torch.isnan(x)
    assert spearman(x[keep], y[keep]) == pytest.approx(spearmanr([1, 3, 2], [1, 3, 4]).statistic)


@pytest.mark.parametrize("n_items", [7, 60])
def test_average_precision_equals_sklearn_without_ties(n_items: int) -> None:
    generator = torch.Generator().manual_seed(n_items)
    responses = torch.randn(n_items, 9, generator=generator)  # continuous: no ties
    groups = torch.randint(3, (n_items,), generator=generator)
    groups[:3] = torch.arange(3)  # every group has a positive
    ours = average_precision_by_group(responses, groups, 3)
    for g in range(3):
        labels = groups == g
        expected = [average_precision_score(labels.numpy(), responses[:, u].numpy())
                    for u in range(responses.shape[1])]  # fmt: skip
        assert average_precision(responses, labels).tolist() == pytest.approx(expected, abs=1e-6)
        assert ours[g].tolist() == pytest.approx(expected, abs=1e-6)


def test_average_precision_with_ties_equals_sklearn() -> None:
    """A tied block is one threshold, as in scikit-learn (the old version broke ties by item
    order and differed from it here by up to 0.08)."""
    generator = torch.Generator().manual_seed(0)
    responses = _tied(generator, 200, 4).reshape(40, 5).float()
    labels = torch.rand(40, generator=generator) < 0.4
    expected = [average_precision_score(labels.numpy(), responses[:, u].numpy()) for u in range(5)]
    assert average_precision(responses, labels).tolist() == pytest.approx(expected, abs=1e-6)
    both = average_precision_by_group(responses, labels.long(), 2)
    assert both[1].tolist() == pytest.approx(expected, abs=1e-6)
    shuffled = torch.randperm(40, generator=generator)  # the items' order does not matter
    assert average_precision(responses[shuffled], labels[shuffled]).tolist() == pytest.approx(
        expected, abs=1e-6
    )
