"""Loading weights strictly, and partially for members that save only what they train."""

import pytest
import torch
from torch import nn

from abhinaya.nn.head import PooledClassifierHead, RenamedStateKeys
from abhinaya.weights.checkpoint import (
    CheckpointError,
    load_model_weights,
    save_tensors,
    trained_state_keys,
)


class Member(RenamedStateKeys, nn.Module):
    """A frozen "pretrained" layer, a trainable adapter and a pooled head with running statistics."""

    renamed_state_keys = (("classifier.", "head."),)

    def __init__(self):
        super().__init__()
        self.pretrained = nn.Linear(4, 4).requires_grad_(False)
        self.adapter = nn.Linear(4, 4)
        self.head = PooledClassifierHead(
            4, 3, pooling="mean_std", attention_dim=8, norm="running", hidden=8, dropout=0.0, input_dropout=0.0,
            activation="relu",
        )


def trained_state(model: Member) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("pretrained.")}


def test_trained_keys_are_trainable_parameters_and_the_head(tmp_path):
    model = Member()
    assert trained_state_keys(model) == set(trained_state(model))
    assert "head.norm.running_mean" in trained_state_keys(model)
    assert not any(k.startswith("pretrained.") for k in trained_state_keys(model))


def test_partial_load_accepts_absent_frozen_keys(tmp_path):
    source, target = Member(), Member()
    source.head.norm.running_mean.fill_(3.0)
    frozen = target.pretrained.weight.clone()
    load_model_weights(target, save_tensors(tmp_path / "w.safetensors", trained_state(source)), partial=True)
    assert torch.equal(target.adapter.weight, source.adapter.weight)
    assert torch.equal(target.head.norm.running_mean, source.head.norm.running_mean)
    assert torch.equal(target.pretrained.weight, frozen)


@pytest.mark.parametrize("dropped", ["adapter.bias", "head.fc2.weight", "head.norm.running_var"])
def test_partial_load_fails_naming_a_missing_trained_key(tmp_path, dropped):
    state = trained_state(Member())
    del state[dropped]
    path = save_tensors(tmp_path / "w.safetensors", state)
    with pytest.raises(CheckpointError, match=rf"missing keys \['{dropped}'\]"):
        load_model_weights(Member(), path, partial=True)


def test_unexpected_keys_and_missing_frozen_keys_of_a_full_load_are_errors(tmp_path):
    state = Member().state_dict()
    path = save_tensors(tmp_path / "extra.safetensors", {**state, "surplus.weight": torch.zeros(1)})
    for partial in (False, True):
        with pytest.raises(CheckpointError, match=r"unexpected keys \['surplus.weight'\]"):
            load_model_weights(Member(), path, partial=partial)
    path = save_tensors(tmp_path / "trained.safetensors", trained_state(Member()))
    with pytest.raises(CheckpointError, match="missing keys .*pretrained.bias"):
        load_model_weights(Member(), path)


def test_earlier_key_names_are_renamed_before_the_check(tmp_path):
    source = Member()
    old = {k.replace("head.", "classifier.", 1): v for k, v in trained_state(source).items()}
    target = Member()
    load_model_weights(target, save_tensors(tmp_path / "old.safetensors", old), partial=True)
    assert torch.equal(target.head.fc1.weight, source.head.fc1.weight)


def test_shape_mismatches_are_errors(tmp_path):
    state = Member().state_dict()
    state["adapter.weight"] = torch.zeros(2, 2)
    with pytest.raises(CheckpointError, match=r"shape mismatch for \['adapter.weight'\]"):
        load_model_weights(Member(), save_tensors(tmp_path / "w.safetensors", state))
