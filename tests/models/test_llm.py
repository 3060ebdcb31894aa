"""Building causal LMs with random weights, and LoRA on them (the weights' loading is tests/weights/test_llm_weights.py)."""

import pytest
import torch

from abhinaya.models.llm import (
    add_lora,
    causal_lm_from_config,
    llm_config_dict,
    lm_from_config_dict,
    lora_param_groups,
)
from abhinaya.weights.llm import load_causal_lm

pytest.importorskip("transformers")


def test_random_weights_from_config(tiny_llama_dir):
    torch.manual_seed(1)  # the fixture's weights are a seed-0 initialisation
    model = causal_lm_from_config(tiny_llama_dir)
    pretrained = load_causal_lm(tiny_llama_dir)
    assert model.config.hidden_size == pretrained.config.hidden_size
    assert not torch.equal(model.lm_head.weight, pretrained.lm_head.weight)


def test_config_dict_rebuilds_the_architecture(tiny_llama_dir):
    pretrained = load_causal_lm(tiny_llama_dir)
    config = llm_config_dict(pretrained.config)
    assert config["model_type"] == "llama" and "architectures" not in config and "dtype" not in config
    causal = lm_from_config_dict(config)
    base = lm_from_config_dict(config, base_only=True)
    assert set(causal.state_dict()) == set(pretrained.state_dict())
    assert not hasattr(base, "lm_head") and len(base.layers) == len(pretrained.model.layers)
    with pytest.raises(ValueError, match="model_type"):
        lm_from_config_dict({k: v for k, v in config.items() if k != "model_type"})


def test_lora_trains_only_the_adapters_of_the_chosen_layers(tiny_llama_dir):
    model = lm_from_config_dict(llm_config_dict(load_causal_lm(tiny_llama_dir).config), base_only=True)
    add_lora(model, r=2, alpha=4, dropout=0.0, target_modules=["q_proj"], layers=[1])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "layers.1." in n for n in trainable)
    head = torch.nn.Linear(2, 2)
    outer = torch.nn.ModuleDict({"llm": model, "head": head})
    groups = {g["name"]: g for g in lora_param_groups(outer, model, 1e-4, 1e-3, 0.01, name="head")}
    assert len(groups["lora"]["params"]) == len(trainable) and groups["lora"]["lr"] == 1e-4
    assert groups["head"]["params"] == [head.weight] and groups["head_no_decay"]["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="nothing"):
        fresh = lm_from_config_dict(llm_config_dict(model.config), base_only=True)
        add_lora(fresh, r=2, alpha=4, dropout=0.0, target_modules=["nothing"])
