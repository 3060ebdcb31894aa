import pytest
import torch

from abhinaya.nn.standardize import BatchStandardize, RunningStandardize


def test_running_standardize_learns_the_training_statistics_and_scales_train_and_eval_alike():
    torch.manual_seed(0)
    norm = RunningStandardize(3, momentum=0.01, floor_quantile=None)
    scale, offset = torch.tensor([1.0, 100.0, 0.01]), torch.tensor([5.0, -300.0, 0.0])
    # Batches that are not random samples of the data: each holds a narrow slice (like length-bucketed batches).
    norm.train()
    for i in range(400):
        x = (torch.randn(8, 3) * 0.1 + torch.randn(1, 3)) * scale + offset
        out = norm(x)
    assert ((norm.running_mean - offset).abs() / scale).max() < 0.3
    assert torch.allclose(norm.running_var.sqrt() / scale, torch.ones(3), atol=0.2)
    # The same batch gives the same output in training (after the statistics settle) and at inference.
    x = torch.randn(8, 3) * scale + offset
    norm.eval()
    at_inference = norm(x)
    norm.train()
    in_training = norm(x)
    assert torch.allclose(in_training, at_inference, atol=0.05)
    # Standardised over the data: about zero mean and unit variance per dimension.
    norm.eval()
    out = norm(torch.randn(4000, 3) * scale + offset)
    assert out.mean(0).abs().max() < 0.15 and (out.std(0) - 1).abs().max() < 0.15


def test_running_standardize_differs_from_batchnorm_on_a_narrow_batch():
    # A batch of near-identical inputs: BatchNorm in training amplifies their tiny differences to unit scale,
    # the running standardisation keeps them small, as at inference.
    torch.manual_seed(0)
    running, batch = RunningStandardize(2, floor_quantile=None), BatchStandardize(2)
    for _ in range(50):
        data = torch.randn(16, 2)
        running.train()(data)
        batch.train()(data)
    narrow = torch.randn(1, 2) + 0.01 * torch.randn(8, 2)
    assert running.train()(narrow).std(0).max() < 0.05
    assert batch.train()(narrow).std(0).min() > 0.5


def test_running_standardize_takes_a_batch_of_one_and_gradients_reach_its_input_and_affine():
    norm = RunningStandardize(4).train()
    x = torch.randn(1, 4, requires_grad=True)
    norm(x).sum().backward()
    assert x.grad is not None and norm.weight.grad is not None and norm.bias.grad is not None
    assert int(norm.num_batches_tracked) == 1
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        norm(torch.randn(2, 5))


def test_a_nearly_constant_dimension_is_not_blown_up_by_the_variance_floor():
    torch.manual_seed(0)
    scale = torch.tensor([1.0, 2.0, 1.5, 1e-2])  # the last: large and nearly the same for every input
    floored, plain = RunningStandardize(4), RunningStandardize(4, floor_quantile=None)
    for _ in range(100):
        x = torch.randn(8, 4) * scale + torch.tensor([0.0, 0.0, 0.0, 5.0])
        floored.train()(x)
        plain.train()(x)
    drifted = torch.tensor([[0.0, 0.0, 0.0, 6.0]])  # a drift of 1 in that dimension
    assert plain.eval()(drifted)[0, 3].abs() > 50  # divided by its own tiny spread
    assert floored.eval()(drifted)[0, 3].abs() < 1.0  # divided by the median dimension's spread
    # Dimensions whose spread is above the median are standardised as without the floor.
    x = torch.randn(5, 4) * scale
    torch.testing.assert_close(floored(x)[:, 1:3], plain(x)[:, 1:3])
    with pytest.raises(ValueError, match="floor_quantile"):
        RunningStandardize(4, floor_quantile=1.5)
