import math

import pytest
import torch
import torch.nn.functional as F

from abhinaya.nn.losses import (
    LOSS_NAMES,
    LossConfig,
    VSLoss,
    WeightedCrossEntropyLoss,
    WeightedFocalLoss,
    build_loss,
    class_weights,
    vs_logit_adjustment,
    vs_loss,
    weighted_cross_entropy,
    weighted_focal_loss,
)

# Three samples, three classes, written out by hand.
LOGITS = [[2.0, 0.5, -1.0], [0.0, 1.0, 0.0], [-0.5, 0.3, 1.5]]
TARGET = [0, 2, 1]
COUNTS = [10, 30, 60]


def _tensors(dtype=torch.float64):
    return torch.tensor(LOGITS, dtype=dtype), torch.tensor(TARGET)


def _log_softmax(row):
    top = max(row)
    log_sum = top + math.log(sum(math.exp(v - top) for v in row))
    return [v - log_sum for v in row]


def _nll(rows, target):
    return [-_log_softmax(row)[y] for row, y in zip(rows, target)]


def _weights_by_hand(counts):
    total, num = sum(counts), len(counts)
    return [total / (num * n) for n in counts]


def test_class_weights_formula():
    weights = class_weights([10, 30, 60])
    assert weights.dtype == torch.float32
    assert weights.tolist() == pytest.approx([100 / 30, 100 / 90, 100 / 180])


def test_class_weights_accepts_tensor_and_balanced_counts_give_ones():
    assert class_weights(torch.tensor([5, 5, 5, 5])).tolist() == pytest.approx([1.0] * 4)


def test_class_weights_zero_count_names_the_class():
    with pytest.raises(ValueError, match="class 1"):
        class_weights([10, 0, 60])
    with pytest.raises(ValueError, match="class 2"):
        class_weights([10, 3, -1])


def test_weighted_cross_entropy_closed_form():
    logits, target = _tensors()
    weights = _weights_by_hand(COUNTS)
    nll = _nll(LOGITS, TARGET)
    expected = sum(weights[y] * l for y, l in zip(TARGET, nll)) / sum(weights[y] for y in TARGET)
    got = weighted_cross_entropy(logits, target, torch.tensor(weights))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    plain = weighted_cross_entropy(logits, target)
    assert plain.item() == pytest.approx(sum(nll) / len(nll), rel=1e-12)


def test_weighted_cross_entropy_matches_torch():
    torch.manual_seed(0)
    logits = torch.randn(16, 5)
    target = torch.randint(0, 5, (16,))
    weight = class_weights([3, 7, 20, 1, 9])
    got = weighted_cross_entropy(logits, target, weight)
    assert torch.allclose(got, F.cross_entropy(logits, target, weight=weight))


def test_weighted_focal_closed_form():
    logits, target = _tensors()
    weights = _weights_by_hand(COUNTS)
    gamma, alpha = 2.0, 0.75
    terms = []
    for row, y in zip(LOGITS, TARGET):
        log_p = _log_softmax(row)[y]
        p = math.exp(log_p)
        terms.append(-alpha * weights[y] * (1 - p) ** gamma * log_p)
    expected = sum(terms) / len(terms)
    got = weighted_focal_loss(logits, target, torch.tensor(weights), gamma=gamma, alpha=alpha)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_focal_gamma_zero_is_plain_mean_of_weighted_nll():
    logits, target = _tensors()
    weights = _weights_by_hand(COUNTS)
    nll = _nll(LOGITS, TARGET)
    expected = sum(weights[y] * l for y, l in zip(TARGET, nll)) / len(nll)
    got = weighted_focal_loss(logits, target, torch.tensor(weights), gamma=0.0, alpha=1.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # not the weighted mean of weighted cross-entropy
    assert got.item() != pytest.approx(weighted_cross_entropy(logits, target, torch.tensor(weights)).item())


def test_focal_gamma_zero_unweighted_is_cross_entropy():
    logits, target = _tensors()
    got = weighted_focal_loss(logits, target, gamma=0.0)
    assert torch.allclose(got, F.cross_entropy(logits, target))


def test_focal_is_stable_for_confident_logits():
    logits = torch.tensor([[80.0, -80.0, 0.0], [-80.0, 80.0, 0.0]], requires_grad=True)
    target = torch.tensor([1, 1])
    loss = weighted_focal_loss(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert loss.item() > 0


def test_vs_closed_form():
    logits, target = _tensors()
    gamma, tau = 0.3, 1.0
    n_max, total = max(COUNTS), sum(COUNTS)
    adjusted = [
        [z * (n / n_max) ** gamma + tau * math.log(n / total) for z, n in zip(row, COUNTS)] for row in LOGITS
    ]
    nll = _nll(adjusted, TARGET)
    weights = _weights_by_hand(COUNTS)
    expected_plain = sum(nll) / len(nll)
    expected_weighted = sum(weights[y] * l for y, l in zip(TARGET, nll)) / sum(weights[y] for y in TARGET)
    assert vs_loss(logits, target, COUNTS, gamma, tau).item() == pytest.approx(expected_plain, rel=1e-6)
    got = vs_loss(logits, target, COUNTS, gamma, tau, weight=torch.tensor(weights))
    assert got.item() == pytest.approx(expected_weighted, rel=1e-6)


def test_vs_adjustment_terms():
    scale, offset = vs_logit_adjustment(COUNTS, gamma=0.5, tau=2.0)
    assert scale.tolist() == pytest.approx([(1 / 6) ** 0.5, 0.5**0.5, 1.0])
    assert offset.tolist() == pytest.approx([2 * math.log(0.1), 2 * math.log(0.3), 2 * math.log(0.6)])


def test_vs_without_adjustment_is_weighted_cross_entropy():
    logits, target = _tensors()
    weight = class_weights(COUNTS)
    got = vs_loss(logits, target, COUNTS, gamma=0.0, tau=0.0, weight=weight)
    assert torch.allclose(got, weighted_cross_entropy(logits, target, weight))


def test_vs_gamma_zero_is_logit_adjustment():
    logits, target = _tensors()
    log_prior = torch.log(torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS))
    got = vs_loss(logits, target, COUNTS, gamma=0.0, tau=1.5)
    assert torch.allclose(got, F.cross_entropy(logits + 1.5 * log_prior, target), atol=1e-6)


def test_vs_tau_zero_is_cdt():
    logits, target = _tensors()
    scale = (torch.tensor(COUNTS, dtype=torch.float64) / max(COUNTS)) ** 0.3
    got = vs_loss(logits, target, COUNTS, gamma=0.3, tau=0.0)
    assert torch.allclose(got, F.cross_entropy(logits * scale, target), atol=1e-6)


def test_vs_zero_count_raises():
    logits, target = _tensors()
    with pytest.raises(ValueError, match="class 0"):
        vs_loss(logits, target, [0, 30, 60])


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_build_loss_every_name_gives_scalar_and_gradients(name):
    torch.manual_seed(1)
    loss_fn = build_loss(LossConfig(name=name), COUNTS)
    assert isinstance(loss_fn, torch.nn.Module)
    logits = torch.randn(4, 3, requires_grad=True)
    target = torch.tensor([0, 1, 2, 1])
    loss = loss_fn(logits, target)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_build_loss_matches_functions():
    logits, target = _tensors(torch.float32)
    weight = class_weights(COUNTS)
    config = LossConfig()
    assert config.name == "weighted_ce"
    assert torch.allclose(build_loss(config, COUNTS)(logits, target), weighted_cross_entropy(logits, target, weight))
    assert torch.allclose(build_loss(LossConfig("ce"))(logits, target), F.cross_entropy(logits, target))
    focal = build_loss(LossConfig("weighted_focal", gamma=1.5, alpha=0.5), COUNTS)
    assert torch.allclose(focal(logits, target), weighted_focal_loss(logits, target, weight, gamma=1.5, alpha=0.5))
    vs = build_loss(LossConfig("vs"), COUNTS)
    assert torch.allclose(vs(logits, target), vs_loss(logits, target, COUNTS, 0.3, 1.0, weight=weight))
    vs_plain = build_loss(LossConfig("vs", vs_class_weights=False), COUNTS)
    assert torch.allclose(vs_plain(logits, target), vs_loss(logits, target, COUNTS, 0.3, 1.0))


def test_build_loss_buffers_follow_to():
    assert isinstance(build_loss(LossConfig("weighted_ce"), COUNTS), WeightedCrossEntropyLoss)
    assert isinstance(build_loss(LossConfig("focal"), COUNTS), WeightedFocalLoss)
    vs = build_loss(LossConfig("vs"), COUNTS)
    assert isinstance(vs, VSLoss)
    assert {name for name, _ in vs.named_buffers()} == {"scale", "offset", "weight"}
    vs = vs.to(torch.float64)
    assert vs.weight.dtype == torch.float64 and vs.scale.dtype == torch.float64
    state = build_loss(LossConfig("weighted_focal"), COUNTS).state_dict()
    assert torch.allclose(state["weight"], class_weights(COUNTS))


def test_build_loss_weighted_needs_counts():
    with pytest.raises(ValueError, match="counts"):
        build_loss(LossConfig("weighted_ce"))


def test_unknown_loss_name_raises():
    with pytest.raises(ValueError, match="weighted_focal"):
        LossConfig(name="cross_entropy")
    with pytest.raises(ValueError, match="gamma"):
        LossConfig(name="focal", gamma=-1.0)


def test_shape_mismatch_raises():
    logits, target = _tensors()
    with pytest.raises(ValueError, match="classes"):
        weighted_cross_entropy(logits, target, torch.ones(4))
    with pytest.raises(ValueError, match="target"):
        weighted_focal_loss(logits, target[:2])
    with pytest.raises(ValueError, match="classes"):
        vs_loss(logits, target, [1, 2, 3, 4])


def test_half_precision_logits_are_computed_in_float32():
    logits, target = _tensors(torch.bfloat16)
    loss = build_loss(LossConfig("weighted_focal"), COUNTS)(logits, target)
    assert loss.dtype == torch.float32
