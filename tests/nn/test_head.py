"""The pooled classifier head shared by the members, and loading state dicts saved under earlier key names."""

import pytest
import torch
from torch import nn

from abhinaya.nn.head import PooledClassifierHead, RenamedStateKeys, rename_state_keys
from abhinaya.nn.pooling import (
    AttentiveStatisticsPooling,
    MeanStdPooling,
    lengths_to_mask,
)
from abhinaya.nn.standardize import BatchStandardize, RunningStandardize

SETTINGS = {"attention_dim": 8, "hidden": 16, "dropout": 0.1, "input_dropout": 0.0, "activation": "gelu"}


def make_head(pooling="attentive", norm=None, **overrides):
    torch.manual_seed(0)
    return PooledClassifierHead(12, 5, **{**SETTINGS, "pooling": pooling, "norm": norm, **overrides})


def test_embed_then_classify_is_forward_and_shapes():
    head = make_head(norm="running").eval()
    hidden = torch.randn(3, 7, 12)
    mask = lengths_to_mask(torch.tensor([7, 4, 1]), 7)
    pooled = head.embed(hidden, mask)
    assert pooled.shape == (3, 24)
    torch.testing.assert_close(pooled, head.pooling(hidden, mask))
    logits = head.classify(pooled)
    assert logits.shape == (3, 5)
    torch.testing.assert_close(head(hidden, mask), logits)


@pytest.mark.parametrize("pooling", ["attentive", "mean_std"])
def test_lengths_and_mask_agree_and_padding_is_ignored(pooling):
    head = make_head(pooling).eval()
    if pooling == "attentive":
        nn.init.normal_(head.pooling.attention[2].weight, std=0.5)  # off uniform, so frame weights matter
    hidden = torch.randn(2, 6, 12)
    lengths = torch.tensor([6, 3])
    by_mask = head(hidden, lengths_to_mask(lengths, 6))
    torch.testing.assert_close(head(hidden, lengths=lengths), by_mask)
    noisy = hidden.clone()
    noisy[1, 3:] = float("nan")
    torch.testing.assert_close(head(noisy, lengths=lengths), by_mask)
    torch.testing.assert_close(head(hidden[1:, :3])[0], by_mask[1])
    with pytest.raises(ValueError, match="either mask or lengths"):
        head.embed(hidden, lengths_to_mask(lengths, 6), lengths=lengths)


def test_parts_follow_the_settings():
    head = make_head("mean_std", norm="batch", input_dropout=0.2, activation="relu")
    assert isinstance(head.pooling, MeanStdPooling) and isinstance(head.norm, BatchStandardize)
    assert isinstance(head.input_dropout, nn.Dropout) and head.input_dropout.p == 0.2
    assert isinstance(head.activation, nn.ReLU)
    plain = make_head()
    assert isinstance(plain.pooling, AttentiveStatisticsPooling)
    assert isinstance(plain.norm, nn.Identity) and isinstance(plain.input_dropout, nn.Identity)
    # Creation order (and so the random initialisation) is pooling, norm, then the two layers.
    assert [n for n, _ in plain.named_parameters()] == [
        "pooling.attention.0.weight", "pooling.attention.0.bias", "pooling.attention.2.weight",
        "pooling.attention.2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
    ]
    with pytest.raises(ValueError, match="activation"):
        make_head(activation="tanh")
    with pytest.raises(ValueError, match="pooling"):
        make_head("max")
    with pytest.raises(ValueError, match="head_norm"):
        make_head(norm="group")


def test_pooled_mean_is_the_running_mean_of_the_training_vectors():
    assert make_head().pooled_mean() is None
    assert make_head(norm="layer").pooled_mean() is None
    head = make_head(norm="running").train()
    hidden = torch.randn(4, 5, 12)
    head(hidden)
    assert isinstance(head.norm, RunningStandardize)
    torch.testing.assert_close(head.pooled_mean(), head.embed(hidden).mean(dim=0))
    assert make_head(norm="batch").pooled_mean() is not None


class Renamed(RenamedStateKeys, nn.Module):
    renamed_state_keys = (("old_linear.", "block.linear."), ("scale", "block.scale"))

    def __init__(self):
        super().__init__()
        self.block = nn.Module()
        self.block.linear = nn.Linear(2, 3)
        self.block.register_buffer("scale", torch.ones(3))


def test_state_dicts_with_earlier_key_names_load():
    source = Renamed()
    old = {"old_linear.weight": torch.randn(3, 2), "old_linear.bias": torch.randn(3), "scale": torch.full((3,), 2.0)}
    target = Renamed()
    target.load_state_dict(old, strict=True)
    assert torch.equal(target.block.linear.weight, old["old_linear.weight"])
    assert torch.equal(target.block.scale, old["scale"])
    assert set(target.upgrade_state_dict(old)) == set(source.state_dict())
    assert "old_linear.weight" in old  # the caller's dict is left alone
    # Inside a bigger model, the prefix is respected.
    outer = nn.Sequential(Renamed())
    outer.load_state_dict({f"0.{k}": v for k, v in old.items()}, strict=True)
    assert torch.equal(outer[0].block.scale, old["scale"])
    # A key present under both names is not overwritten: the old one is left for a strict load to report.
    both = {**source.state_dict(), "scale": torch.zeros(3)}
    with pytest.raises(RuntimeError, match="scale"):
        Renamed().load_state_dict(both, strict=True)


def test_rename_state_keys_only_touches_the_prefix():
    state = {"a.old.x": 1, "old.y": 2, "b.old_z": 3}
    rename_state_keys(state, (("old.", "new."),), prefix="a.")
    assert state == {"a.new.x": 1, "old.y": 2, "b.old_z": 3}
