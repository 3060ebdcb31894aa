import numpy as np
import pytest
import torch

from abhinaya.nn.pooling import (
    AttentiveStatisticsPooling,
    MeanStdPooling,
    lengths_to_mask,
)


def trained_attentive(dim: int, attention_dim: int = 8) -> AttentiveStatisticsPooling:
    """An attentive pooling whose scorer is no longer uniform, as after training."""
    pooling = AttentiveStatisticsPooling(dim, attention_dim)
    torch.nn.init.normal_(pooling.attention[2].weight)
    torch.nn.init.normal_(pooling.attention[2].bias)
    return pooling


def test_lengths_to_mask():
    mask = lengths_to_mask(torch.tensor([3, 1, 0]), 4)
    expected = torch.tensor(
        [[True, True, True, False], [True, False, False, False], [False, False, False, False]]
    )
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)
    assert lengths_to_mask(torch.tensor([2, 5])).shape == (2, 5)


@pytest.mark.parametrize("pooling_cls", [AttentiveStatisticsPooling, MeanStdPooling])
def test_padded_frames_have_no_effect(pooling_cls):
    torch.manual_seed(0)
    pooling = trained_attentive(6) if pooling_cls is AttentiveStatisticsPooling else pooling_cls()
    hidden = torch.randn(3, 10, 6)
    mask = lengths_to_mask(torch.tensor([10, 4, 7]), 10)
    out = pooling(hidden, mask)
    assert out.shape == (3, 12)

    changed = hidden.clone()
    changed[~mask] = torch.randn(int((~mask).sum()), 6) * 100
    assert torch.equal(pooling(changed, mask), out)
    changed[~mask] = float("nan")
    assert torch.equal(pooling(changed, mask), out)

    # Same as pooling each utterance alone, cut to its length.
    for b, n in enumerate([10, 4, 7]):
        alone = pooling(hidden[b : b + 1, :n], torch.ones(1, n, dtype=torch.bool))
        torch.testing.assert_close(alone[0], out[b], rtol=1e-5, atol=1e-6)


def test_attention_weights_sum_to_one_over_valid_frames():
    torch.manual_seed(1)
    pooling = trained_attentive(5)
    hidden = torch.randn(2, 6, 5)
    mask = lengths_to_mask(torch.tensor([6, 3]), 6)
    weights = pooling.attention_weights(hidden, mask)
    assert weights.shape == (2, 6)
    assert torch.all(weights[~mask] == 0)
    assert torch.all(weights[mask] > 0)
    assert not torch.allclose(weights[0], torch.full((6,), 1 / 6))  # a trained scorer is not uniform
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2))


def test_fully_masked_row_is_finite_with_finite_gradients():
    pooling = trained_attentive(4, attention_dim=4)
    hidden = torch.randn(2, 3, 4, requires_grad=True)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out = pooling(hidden, mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1, :4], torch.zeros(4))
    out.sum().backward()
    assert torch.isfinite(hidden.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in pooling.parameters())


def test_mean_std_matches_numpy():
    values = np.array(
        [
            [[1.0, 2.0], [3.0, 6.0], [5.0, 10.0], [99.0, -99.0]],
            [[2.0, 2.0], [-7.0, 7.0], [0.0, 0.0], [0.0, 0.0]],
        ],
        dtype=np.float32,
    )
    lengths = [3, 1]
    out = MeanStdPooling(eps=1e-5)(torch.from_numpy(values), lengths_to_mask(torch.tensor(lengths), 4)).numpy()
    for b, n in enumerate(lengths):
        frames = values[b, :n]
        expected = np.concatenate([frames.mean(axis=0), np.sqrt(np.maximum(frames.var(axis=0), 1e-5))])
        np.testing.assert_allclose(out[b], expected, rtol=1e-6, atol=1e-6)
    # Utterance 1 has one frame: std is the floor sqrt(eps).
    np.testing.assert_allclose(out[1, 2:], np.sqrt(1e-5), rtol=1e-5)


def test_new_attentive_pooling_equals_mean_std_and_still_learns():
    torch.manual_seed(2)
    pooling = AttentiveStatisticsPooling(3, attention_dim=4)
    hidden = torch.randn(2, 5, 3)
    mask = lengths_to_mask(torch.tensor([5, 2]), 5)
    torch.testing.assert_close(pooling(hidden, mask), MeanStdPooling()(hidden, mask))
    # The zero scorer still receives a gradient, so attention can move away from uniform.
    pooling(hidden, mask)[:, :3].pow(2).sum().backward()
    assert pooling.attention[2].weight.grad.abs().sum() > 0


def test_pooling_without_mask_uses_every_frame():
    hidden = torch.randn(2, 4, 3)
    full = torch.ones(2, 4, dtype=torch.bool)
    torch.testing.assert_close(MeanStdPooling()(hidden), MeanStdPooling()(hidden, full))


def test_bad_mask_shape_is_an_error():
    with pytest.raises(ValueError, match="mask"):
        MeanStdPooling()(torch.randn(2, 4, 3), torch.ones(2, 5, dtype=torch.bool))
