"""An LLM used as a text encoder (ABHINAYA T2): a decoder-only language model
with LoRA adapters -> the hidden states of its last layer run -> masked
attentive statistics pooling -> MLP head.

Compute is spent only where it can change the result:
- layers above ``layer`` are removed (their output is never used);
- LoRA sits on the top ``lora_layers`` of the layers run; everything below is
  frozen and deterministic, so its output (the input of the first adapted
  layer) is computed once per distinct input and kept in memory
  (``cache_frozen``): after the first epoch only the adapted layers run;
- the language-model head (vocabulary projection) is never built.

Input: ``input_ids`` (B, T) right-padded and ``attention_mask`` (B, T), 1 on
real tokens; optionally ``pool_mask`` (B, T), true on the tokens to pool (the
utterance itself when earlier conversation turns precede it; default: every
real token). Output: logits (B, num_labels).
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from abhinaya.models.llm import (
    add_lora,
    llm_config_dict,
    lm_from_config_dict,
    lora_param_groups,
)
from abhinaya.nn.head import PooledClassifierHead, RenamedStateKeys
from abhinaya.nn.pooling import POOLINGS
from abhinaya.nn.standardize import HEAD_NORMS


@dataclass
class LLMTextClassifierConfig:
    """Settings of :class:`LLMTextClassifier`; the only place their defaults live.

    Attributes:
        llm: model name or local folder of the pretrained causal LM (``abhinaya.weights.llm.load_causal_lm``).
        llm_config: keyword arguments of a transformers config; the constructor builds a random-weight LM from it.
            ``from_pretrained_llm`` fills it, so a run folder records the architecture.
        layer: number of decoder layers run; their last output (after the model's final norm) is pooled.
            None = all layers (the paper's "last hidden layer").
        lora_layers: LoRA on the top k of the layers run; the layers below are frozen. None = every layer run.
        lora_r / lora_alpha / lora_dropout / lora_target_modules: the LoRA adapters (PEFT).
        pooling: "attentive" (attentive statistics pooling) or "mean_std".
        attention_dim: hidden size of the attentive pooling's scoring network.
        head_hidden: hidden size of the MLP head; dropout: its dropout.
        head_norm: normalisation of the pooled vector at the head's input: "layer" (LayerNorm over the vector),
            "running" (each dimension standardised with running statistics of the training data) or "batch"
            (BatchNorm); see ``abhinaya.nn.standardize``. An LLM's hidden states have a few huge dimensions that
            are nearly the same for every input, which a LayerNorm lets dominate the vector's scale.
        cache_frozen: keep the output of the frozen layers per distinct input (exact; memory: tokens x hidden x 4 B).
        num_labels: number of classes.
    """

    llm: str = "smollm2"
    llm_config: dict[str, Any] | None = None
    layer: int | None = None
    lora_layers: int | None = None
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    pooling: str = "attentive"
    attention_dim: int = 128
    head_hidden: int = 256
    dropout: float = 0.1
    head_norm: str = "layer"
    cache_frozen: bool = True
    num_labels: int = 7

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.head_norm not in HEAD_NORMS:
            raise ValueError(f"head_norm must be one of {HEAD_NORMS}, got {self.head_norm!r}")
        if self.layer is not None and self.layer < 1:
            raise ValueError(f"layer (number of decoder layers run) must be >= 1, got {self.layer}")
        if self.lora_layers is not None and self.lora_layers < 1:
            raise ValueError(f"lora_layers must be >= 1 (or null for all), got {self.lora_layers}")
        if self.lora_r < 1:
            raise ValueError(f"lora_r must be >= 1, got {self.lora_r}")
        if not self.lora_target_modules:
            raise ValueError("lora_target_modules must name at least one module (e.g. q_proj, v_proj)")
        if self.num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {self.num_labels}")


class LLMTextClassifier(RenamedStateKeys, nn.Module):
    """Decoder LM + LoRA -> pooled hidden states -> MLP head (see the module docstring)."""

    # Runs saved before pooling and head became one head module still load.
    renamed_state_keys = (
        ("pooling.", "head.pooling."),
        ("head.0.", "head.norm."),
        ("head.2.", "head.fc1."),
        ("head.5.", "head.fc2."),
    )

    def __init__(self, config: LLMTextClassifierConfig, *, base: nn.Module | None = None):
        """Build from ``config`` with random LM weights, or around ``base``, an already built decoder
        (``from_pretrained_llm`` passes the pretrained one)."""
        super().__init__()
        if base is None:
            if config.llm_config is None:
                raise ValueError(
                    "llm_config is empty: use LLMTextClassifier.from_pretrained_llm (it records the architecture)"
                )
            base = lm_from_config_dict(config.llm_config, base_only=True)
        self.config = config
        self.llm = base
        self._setup()

    def _setup(self) -> None:
        """Truncate to the layers run, freeze the LM, add LoRA on the top layers, build pooling and head."""
        config = self.config
        total = len(self.llm.layers)
        run = total if config.layer is None else config.layer
        if run > total:
            raise ValueError(f"layer {run} asked, but the LM has {total} decoder layers")
        if run < total:
            self.llm.layers = nn.ModuleList(list(self.llm.layers)[:run])
            self.llm.config.num_hidden_layers = run
        adapted = run if config.lora_layers is None else min(config.lora_layers, run)
        self.num_layers = run
        self.first_adapted = run - adapted  # layers [0, first_adapted) are frozen
        add_lora(
            self.llm,
            r=config.lora_r,
            alpha=config.lora_alpha,
            dropout=config.lora_dropout,
            target_modules=config.lora_target_modules,
            layers=list(range(self.first_adapted, run)),
        )
        hidden = self.llm.config.hidden_size
        self.hidden_size = hidden
        self.head = PooledClassifierHead.from_settings(hidden, config, input_dropout=config.dropout, activation="gelu")
        self._frozen_cache: dict[bytes, torch.Tensor] = {}

    @classmethod
    def from_pretrained_llm(cls, config: LLMTextClassifierConfig) -> "LLMTextClassifier":
        """Build around the pretrained LM named by ``config.llm`` (local files only).
        The returned model's ``config.llm_config`` records the architecture."""
        from abhinaya.weights.llm import load_causal_lm

        base = load_causal_lm(config.llm, base_only=True)
        resolved = dataclasses.replace(config, llm_config=llm_config_dict(base.config))
        return cls(resolved, base=base.float())

    # ------------------------------------------------------------------ running parts of the stack

    @contextmanager
    def _layer_range(self, start: int, stop: int, final_norm: bool) -> Iterator[None]:
        """Make the LM run only decoder layers [start, stop) (and its final norm or not) inside the block.
        Uses only the LM's public forward (``inputs_embeds`` to start mid-stack)."""
        llm = self.llm
        layers, norm, count = llm.layers, llm.norm, llm.config.num_hidden_layers
        llm.layers = nn.ModuleList(list(layers)[start:stop])
        llm.config.num_hidden_layers = stop - start
        if not final_norm:
            llm.norm = nn.Identity()
        try:
            yield
        finally:
            llm.layers, llm.norm = layers, norm
            llm.config.num_hidden_layers = count

    def _run(self, start: int, stop: int, final_norm: bool, attention_mask: torch.Tensor, **inputs) -> torch.Tensor:
        with self._layer_range(start, stop, final_norm):
            return self.llm(attention_mask=attention_mask, use_cache=False, **inputs).last_hidden_state

    def frozen_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D) input of the first adapted layer: the embeddings, or the output of the frozen layers
        (from the cache where the same token sequence was seen before)."""
        if self.first_adapted == 0:
            return self.llm.embed_tokens(input_ids)
        lengths = attention_mask.sum(dim=1).tolist()
        keys = [input_ids[b, : int(n)].cpu().numpy().tobytes() for b, n in enumerate(lengths)]
        use_cache = self.config.cache_frozen
        missing = [b for b, key in enumerate(keys) if not use_cache or key not in self._frozen_cache]
        out = torch.zeros(
            input_ids.shape[0], input_ids.shape[1], self.hidden_size, device=input_ids.device,
            dtype=self.llm.embed_tokens.weight.dtype,
        )
        if missing:
            rows = torch.tensor(missing, device=input_ids.device)
            width = max(int(lengths[b]) for b in missing)
            with torch.no_grad():
                states = self._run(
                    0, self.first_adapted, False, attention_mask[rows, :width], input_ids=input_ids[rows, :width]
                )
            for j, b in enumerate(missing):
                n = int(lengths[b])
                out[b, :n] = states[j, :n]
                if use_cache:
                    self._frozen_cache[keys[b]] = states[j, :n].detach().to("cpu", copy=True)
        for b, key in enumerate(keys):
            if use_cache and b not in missing:
                cached = self._frozen_cache[key]
                out[b, : cached.shape[0]] = cached.to(out.device)
        return out

    def clear_cache(self) -> None:
        self._frozen_cache.clear()

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D) output of the last layer run, after the LM's final norm."""
        attention_mask = attention_mask.to(torch.long)
        start = self.frozen_states(input_ids, attention_mask)
        return self._run(self.first_adapted, self.num_layers, True, attention_mask, inputs_embeds=start)

    def embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pool_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled vectors (B, 2 * D) before the head; inputs as :meth:`forward`."""
        hidden = self.hidden_states(input_ids, attention_mask)
        mask = attention_mask.bool() if pool_mask is None else pool_mask.bool() & attention_mask.bool()
        return self.head.embed(hidden.float(), mask)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_labels) of pooled vectors (B, 2 * D)."""
        return self.head.classify(pooled)

    def pooled_mean(self) -> torch.Tensor | None:
        """The running mean of the training pooled vectors kept by ``head_norm`` ("running" or "batch"), or None."""
        return self.head.pooled_mean()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pool_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Class logits (B, num_labels) of token ids (B, T) with ``attention_mask`` (B, T) and ``pool_mask`` (B, T)."""
        return self.classify(self.embed(input_ids, attention_mask, pool_mask))

    # ------------------------------------------------------------------ training helpers

    def train(self, mode: bool = True) -> "LLMTextClassifier":
        super().train(mode)
        # Frozen layers stay deterministic (and cacheable) while the rest trains.
        for layer in list(self.llm.layers)[: self.first_adapted]:
            layer.eval()
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what is trained: the LoRA adapters, pooling and head, with the head's running statistics (buffers
        learnt from the training data, for ``head_norm`` running / batch)."""
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        learnt = {f"head.{name}" for name, _ in self.head.named_buffers()}
        return {k: v for k, v in self.state_dict().items() if k in trainable or k in learnt}

    def param_groups(self, lora_lr: float, head_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """LoRA adapters at ``lora_lr``; pooling and head at ``head_lr`` (matrices decayed, vectors not)."""
        return lora_param_groups(self, self.llm, lora_lr, head_lr, weight_decay, name="head")


__all__ = ["LLMTextClassifier", "LLMTextClassifierConfig"]
