"""Building causal language models: from a config (random weights), with LoRA adapters, and their optimizer
groups. Finding and loading their pretrained weights is ``abhinaya.weights.llm``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from abhinaya.weights.cache import ModelNotAvailableError
from abhinaya.weights.llm import model_source

# Bookkeeping keys of a transformers config that do not describe the architecture.
LLM_CONFIG_HOUSEKEEPING_KEYS = (
    "architectures",
    "transformers_version",
    "_name_or_path",
    "quantization_config",
    "dtype",
    "torch_dtype",
)


def llm_config_dict(hf_config) -> dict[str, Any]:
    """A transformers LM config as plain data (with its ``model_type``), for :func:`lm_from_config_dict`."""
    data = hf_config.to_dict()
    for key in LLM_CONFIG_HOUSEKEEPING_KEYS:
        data.pop(key, None)
    return data


def lm_from_config_dict(llm_config: dict[str, Any], *, base_only: bool = False) -> torch.nn.Module:
    """A random-weight causal LM (``AutoModelForCausalLM``), or with ``base_only`` the decoder without its LM head
    (``AutoModel``), from config keyword arguments that include ``model_type``."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    kwargs = dict(llm_config)
    model_type = kwargs.pop("model_type", None)
    if model_type is None:
        raise ValueError("llm_config needs a model_type (e.g. llama)")
    loader = AutoModel if base_only else AutoModelForCausalLM
    return loader.from_config(AutoConfig.for_model(model_type, **kwargs))


def causal_lm_from_config(
    name_or_path: str | Path, *, dtype: torch.dtype = torch.float32, base_only: bool = False
) -> torch.nn.Module:
    """The architecture of a model folder with random weights (no weights are read)."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    folder, gguf = model_source(name_or_path, None)
    if gguf:
        raise ValueError(f"{folder / gguf}: building from a config needs a model folder, not a GGUF file")
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise ModelNotAvailableError(f"{folder}: no usable config.json ({err})") from None
    loader = AutoModel if base_only else AutoModelForCausalLM
    return loader.from_config(config, dtype=dtype).eval()


def add_lora(
    model: torch.nn.Module,
    *,
    r: int,
    alpha: int,
    dropout: float,
    target_modules: list[str],
    layers: list[int] | None = None,
) -> None:
    """Freeze ``model`` and inject PEFT LoRA adapters (adapter name "default") into ``target_modules`` of the decoder
    layers numbered ``layers`` (None = all). Only the adapters are trainable afterwards."""
    from peft import LoraConfig, inject_adapter_in_model

    for p in model.parameters():
        p.requires_grad_(False)
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules),
        layers_to_transform=None if layers is None else list(layers),
        layers_pattern=None if layers is None else "layers",
        bias="none",
    )
    inject_adapter_in_model(config, model)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"LoRA found none of the modules {list(target_modules)} in the LM's layers")


def lora_param_groups(
    model: torch.nn.Module, llm: torch.nn.Module, lora_lr: float, lr: float, weight_decay: float, name: str
) -> list[dict]:
    """Optimizer groups of a model built around an LLM with LoRA: the adapters inside ``llm`` at ``lora_lr``; every
    other trainable parameter of ``model`` at ``lr`` (group ``name``), matrices with weight decay, vectors without."""
    llm_ids = {id(p) for p in llm.parameters()}
    buckets: dict[str, list[torch.nn.Parameter]] = {"lora": [], name: [], f"{name}_no_decay": []}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if id(p) in llm_ids:
            buckets["lora"].append(p)
        else:
            buckets[name if p.ndim >= 2 else f"{name}_no_decay"].append(p)
    rates = {"lora": (lora_lr, weight_decay), name: (lr, weight_decay), f"{name}_no_decay": (lr, 0.0)}
    return [
        {"name": group, "params": params, "lr": rates[group][0], "weight_decay": rates[group][1]}
        for group, params in buckets.items()
        if params
    ]


__all__ = [
    "add_lora",
    "causal_lm_from_config",
    "llm_config_dict",
    "lm_from_config_dict",
    "lora_param_groups",
]
