"""A SALMONN-style speech LLM (members S2 and ST1).

    waveform -> Whisper encoder (frozen) -> LayerNorm ─┐
             -> BEATs encoder (frozen, optional) -> LayerNorm ─┴ frame-wise concatenation
             -> window-level Q-Former (one query per window of 17 frames at paper scale)
             -> linear projection into the LLM's embedding space
             -> spliced into the prompt at the <SpeechHere> placeholder
             -> causal LM with LoRA
             -> classifier: last hidden layer run -> masked attentive statistics pooling -> MLP head
                generative: log-likelihood of each class name after the prompt (constrained scoring)

Only real audio counts: Whisper runs on the true number of frames (no padding to 30 s), the Q-Former yields only the
windows that hold audio, and masks follow the padding through every stage. The frozen encoders' outputs can be
cached on disk (``feature_cache``), keyed by audio content and encoder, so later epochs skip them; the training crop
is then taken from the cached features of the whole utterance (``train_crop_seconds``).

Inputs of :meth:`SpeechLLM.forward`: ``waveforms`` (B, S) 16 kHz zero-padded, ``lengths`` (B,) samples, and the token
ids of the prompt around the speech: ``prefix_ids`` (B, P) / ``prefix_lengths`` (B,) before the placeholder and
``suffix_ids`` (B, Q) / ``suffix_lengths`` (B,) after it (the transcript, for ST1, is part of the suffix). Output:
logits (B, num_labels).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from abhinaya.models.llm import (
    add_lora,
    llm_config_dict,
    lm_from_config_dict,
    lora_param_groups,
)
from abhinaya.nn.head import PooledClassifierHead, RenamedStateKeys
from abhinaya.nn.pooling import POOLINGS, lengths_to_mask
from abhinaya.nn.qformer import WindowQFormer, WindowQFormerConfig
from abhinaya.nn.standardize import HEAD_NORMS
from abhinaya.nn.whisper_frontend import (
    WhisperLogMel,
    build_encoder,
    encoder_config_dict,
    whisper_frontend,
)
from abhinaya.weights.feature_cache import EncoderFeatureCache, audio_key, encoder_key

__all__ = ["SpeechLLM", "SpeechLLMConfig"]

OUTPUTS = ("classifier", "generative")


@dataclass
class SpeechLLMConfig:
    """Settings of :class:`SpeechLLM`; the only place their defaults live.

    Attributes:
        whisper: name or local folder of the Whisper model whose encoder is used.
        whisper_config: transformers WhisperConfig keyword arguments; the constructor builds a random encoder from it
            (``from_pretrained`` fills it).
        whisper_layer: Whisper hidden state used: None = the encoder output (SALMONN), k = the output of layer k
            (layers above k are not run). Run on the true length, Whisper's middle layers keep more of the emotion
            information than its last one.
        beats: path of a BEATs checkpoint (``.pt``) for the audio branch; None = speech branch only.
        beats_config: ``BEATsConfig`` fields (filled from the checkpoint); None = no audio branch.
        qformer: the window-level Q-Former (``encoder_width`` is filled from the encoders).
        llm: name or local folder of the causal LM. llm_config: its transformers config (filled by ``from_pretrained``).
        lora_r / lora_alpha / lora_dropout / lora_target_modules: LoRA on every decoder layer run (PEFT).
        output: "classifier" (pooled hidden states -> MLP head) or "generative" (scores of the class names).
        layer: classifier only: number of decoder layers run (None = all, the paper's last hidden layer).
        pooling / attention_dim / head_hidden / dropout: classifier pooling and head.
        head_norm: classifier: normalisation of the pooled vector at the head's input: "running" (each dimension
            standardised with running statistics of the training data, in training as at inference), "batch"
            (BatchNorm: the batch's statistics in training) or "layer" (LayerNorm over the vector). An LLM's hidden
            states carry a few dimensions of very large magnitude that are the same for every input; a LayerNorm
            over the vector divides the informative dimensions by their scale, a per-dimension standardisation does
            not. With length-bucketed batches "batch" normalises training batches differently from inference, which
            can collapse dev predictions onto one class (see models/standardize.py).
        pool_over: classifier: positions pooled, "content" (the speech tokens and, for ST1, the transcript's tokens;
            the prompt's fixed words are left out) or "all" (every position but padding).
        train_crop_seconds: training only: a random window of this length taken from the encoder output of the whole
            utterance (None = whole utterance).
        max_seconds: audio beyond this is dropped (Whisper's window is 30 s; SALMONN reads the first 30 s).
        salmonn_checkpoint: official SALMONN checkpoint (salmonn_v1.pth / salmonn_7b_v0.pth) loaded by
            ``from_pretrained`` over the Q-Former, projection, LayerNorms and LoRA.
        feature_cache: folder of the on-disk cache of the frozen encoders' outputs; None = no cache.
        num_labels: number of classes.
    """

    whisper: str = "whisper-base"
    whisper_config: dict[str, Any] | None = None
    whisper_layer: int | None = None
    beats: str | None = None
    beats_config: dict[str, Any] | None = None
    qformer: WindowQFormerConfig = field(default_factory=WindowQFormerConfig)
    llm: str = "smollm2"
    llm_config: dict[str, Any] | None = None
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    output: str = "classifier"
    layer: int | None = None
    pooling: str = "attentive"
    pool_over: str = "content"
    head_norm: str = "running"
    attention_dim: int = 128
    head_hidden: int = 256
    dropout: float = 0.1
    train_crop_seconds: float | None = None
    max_seconds: float = 30.0
    salmonn_checkpoint: str | None = None
    feature_cache: str | None = None
    num_labels: int = 8

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.head_norm not in HEAD_NORMS:
            raise ValueError(f"head_norm must be one of {HEAD_NORMS}, got {self.head_norm!r}")
        if self.pool_over not in ("content", "all"):
            raise ValueError(f"pool_over must be 'content' or 'all', got {self.pool_over!r}")
        if self.layer is not None and self.layer < 1:
            raise ValueError(f"layer (number of decoder layers run) must be >= 1, got {self.layer}")
        if self.layer is not None and self.output == "generative":
            raise ValueError("layer applies to output='classifier'; the generative output needs every layer")
        if self.train_crop_seconds is not None and self.train_crop_seconds <= 0:
            raise ValueError(f"train_crop_seconds must be positive or null, got {self.train_crop_seconds}")
        if not 0 < self.max_seconds <= 30:
            raise ValueError(f"max_seconds must be in (0, 30] (Whisper's window), got {self.max_seconds}")
        if self.num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {self.num_labels}")
        if self.whisper_layer is not None and self.whisper_layer < 1:
            raise ValueError(f"whisper_layer must be >= 1 (or null for the encoder output), got {self.whisper_layer}")


class SpeechLLM(RenamedStateKeys, nn.Module):
    """Speech encoders -> window Q-Former -> projection -> LLM with LoRA -> class logits (see the module docstring).

    The constructor builds every part from ``config`` with random weights, or around already built ``whisper``
    (a transformers WhisperEncoder), ``beats`` and ``llm`` (a causal LM) modules; :meth:`from_pretrained` loads them.
    """

    # Runs saved before pooling and head became one head module still load.
    renamed_state_keys = (
        ("pooling.", "head.pooling."),
        ("head.0.", "head.norm."),
        ("head.2.", "head.fc1."),
        ("head.5.", "head.fc2."),
    )

    def __init__(
        self,
        config: SpeechLLMConfig,
        *,
        whisper: nn.Module | None = None,
        beats: nn.Module | None = None,
        llm: nn.Module | None = None,
    ):
        super().__init__()
        if whisper is None:
            if config.whisper_config is None:
                raise ValueError("whisper_config is empty: use SpeechLLM.from_pretrained (it records the architecture)")
            whisper = build_encoder("whisper", config.whisper_config)
        if beats is None and config.beats_config is not None:
            from abhinaya.nn.beats import BEATs, BEATsConfig

            beats = BEATs(BEATsConfig(**config.beats_config))
        if llm is None:
            if config.llm_config is None:
                raise ValueError("llm_config is empty: use SpeechLLM.from_pretrained (it records the architecture)")
            llm = lm_from_config_dict(config.llm_config)
        self.config = config

        # Frozen encoders.
        self.whisper = whisper
        num_whisper_layers = len(whisper.layers)
        if config.whisper_layer is not None and config.whisper_layer > num_whisper_layers:
            raise ValueError(f"whisper_layer {config.whisper_layer} asked, but Whisper has {num_whisper_layers} layers")
        self.whisper_layers_run = config.whisper_layer or num_whisper_layers
        self.log_mel = WhisperLogMel(whisper.config.num_mel_bins, 16000)
        self.max_mel_frames = whisper.config.max_source_positions * whisper.conv1.stride[0] * whisper.conv2.stride[0]
        self.beats = beats
        for module in (self.whisper, self.beats):
            if module is not None:
                module.requires_grad_(False)
        speech_width = int(whisper.config.d_model)
        self.ln_speech = nn.LayerNorm(speech_width)
        width = speech_width
        if beats is not None:
            audio_width = int(beats.config.encoder_embed_dim)
            self.ln_audio = nn.LayerNorm(audio_width)
            width += audio_width

        # Q-Former and projection.
        qconfig = dataclasses.replace(config.qformer, encoder_width=width)
        self.config = dataclasses.replace(config, qformer=qconfig)
        self.qformer = WindowQFormer(qconfig)

        # LLM with LoRA.
        self.llm = llm
        layers = self.llm.model.layers
        if config.layer is not None:
            if config.layer > len(layers):
                raise ValueError(f"layer {config.layer} asked, but the LM has {len(layers)} decoder layers")
            self.llm.model.layers = nn.ModuleList(list(layers)[: config.layer])
            self.llm.config.num_hidden_layers = config.layer
        add_lora(
            self.llm,
            r=config.lora_r,
            alpha=config.lora_alpha,
            dropout=config.lora_dropout,
            target_modules=config.lora_target_modules,
        )
        llm_width = int(self.llm.config.hidden_size)
        self.proj = nn.Linear(qconfig.hidden_size, llm_width)
        # Start the speech tokens at the scale of the LLM's token embeddings (the Q-Former output is layer-normalised,
        # entries ~1): default initialisation makes them several times larger, out of the range the LLM was trained on.
        with torch.no_grad():
            embedding_rms = float(self.llm.get_input_embeddings().weight.float().pow(2).mean().sqrt())
            self.proj.weight.normal_(0.0, embedding_rms / qconfig.hidden_size**0.5)
            self.proj.bias.zero_()

        if config.output == "classifier":
            self.head = PooledClassifierHead.from_settings(
                llm_width, config, input_dropout=config.dropout, activation="gelu"
            )
        # Generative output: token ids of each class name (C, K), set by the member with set_label_tokens.
        self.register_buffer("label_token_ids", torch.zeros(0, 0, dtype=torch.long), persistent=False)
        self.register_buffer("label_token_lengths", torch.zeros(0, dtype=torch.long), persistent=False)

        self.cache: EncoderFeatureCache | None = None
        if config.feature_cache:
            self.cache = EncoderFeatureCache(config.feature_cache, self.encoder_key())

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_pretrained(cls, config: SpeechLLMConfig, log=None) -> "SpeechLLM":
        """Load Whisper, BEATs (when ``config.beats`` is set) and the LLM from local files, then the official SALMONN
        checkpoint when ``config.salmonn_checkpoint`` is set. The returned model's config records every
        architecture, so ``SpeechLLM(model.config)`` rebuilds it offline."""
        from transformers import WhisperModel

        from abhinaya.weights.cache import resolve_model_path
        from abhinaya.weights.llm import load_causal_lm

        path = resolve_model_path(config.whisper)
        whisper = WhisperModel.from_pretrained(path, local_files_only=True, dtype=torch.float32).encoder
        beats = None
        beats_config = None
        if config.beats:
            from abhinaya.nn.beats import load_beats_checkpoint

            beats = load_beats_checkpoint(config.beats)
            beats_config = dataclasses.asdict(beats.config)
        llm = load_causal_lm(config.llm).float()
        resolved = dataclasses.replace(
            config,
            whisper_config=encoder_config_dict(whisper.config),
            beats_config=beats_config,
            llm_config=llm_config_dict(llm.config),
        )
        model = cls(resolved, whisper=whisper, beats=beats, llm=llm)
        if config.salmonn_checkpoint:
            from abhinaya.weights.salmonn_checkpoint import load_salmonn_checkpoint

            report = load_salmonn_checkpoint(model, config.salmonn_checkpoint)
            if log is not None:
                log(report.summary())
        return model

    def encoder_key(self) -> str:
        """Identity of the frozen encoders (settings and a fingerprint of their weights) for the feature cache."""
        description = {
            "whisper": self.config.whisper_config,
            "whisper_layer": self.config.whisper_layer,
            "beats": self.config.beats_config,
            "max_seconds": self.config.max_seconds,
        }
        modules = [m for m in (self.whisper, self.beats) if m is not None]
        return encoder_key(description, modules)

    def set_label_tokens(self, token_ids: list[list[int]]) -> None:
        """Token ids of each class name, in label order (generative output)."""
        if not token_ids or any(len(ids) == 0 for ids in token_ids):
            raise ValueError("every class name needs at least one token")
        width = max(len(ids) for ids in token_ids)
        table = torch.zeros(len(token_ids), width, dtype=torch.long)
        for c, ids in enumerate(token_ids):
            table[c, : len(ids)] = torch.tensor(ids)
        device = self.proj.weight.device
        self.label_token_ids = table.to(device)
        self.label_token_lengths = torch.tensor([len(ids) for ids in token_ids], device=device)

    # ------------------------------------------------------------------ frozen encoders

    @property
    def frame_rate(self) -> float:
        """Encoder frames per second (Whisper: 50)."""
        return 16000 / (self.log_mel.hop_length * self.whisper.conv2.stride[0])

    @torch.no_grad()
    def _encode_whisper(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mel, frames = self.log_mel(waveforms, lengths)
        x, mask, attention_mask = whisper_frontend(self.whisper, mel, frames)
        for layer in self.whisper.layers[: self.whisper_layers_run]:
            x = layer(x, attention_mask)
            if isinstance(x, tuple):
                x = x[0]
        if self.config.whisper_layer is None:
            x = self.whisper.layer_norm(x)
        return x, mask

    @torch.no_grad()
    def _encode_uncached(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Per utterance (T_b, D_speech [+ D_audio]) frozen features: Whisper frames, with the BEATs sequence
        (padded or cut to the same number of frames) concatenated frame-wise."""
        speech, mask = self._encode_whisper(waveforms, lengths)
        counts = mask.sum(dim=1).tolist()
        if self.beats is None:
            return [speech[b, : int(n)] for b, n in enumerate(counts)]
        audio, audio_mask = self.beats(waveforms, lengths)
        out = []
        for b, n in enumerate(counts):
            n = int(n)
            a = audio[b, : int(audio_mask[b].sum())][:n]
            if a.shape[0] < n:
                a = F.pad(a, (0, 0, 0, n - a.shape[0]))
            out.append(torch.cat([speech[b, :n], a.to(speech.dtype)], dim=-1))
        return out

    def frozen_features(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Frozen encoder output of each utterance, (T_b, D) per row, read from the feature cache where present."""
        lengths = lengths.long().clamp(max=int(self.config.max_seconds * 16000))
        if (lengths <= 0).any():
            raise ValueError(f"every utterance needs at least one sample; lengths={lengths.tolist()}")
        waveforms = waveforms[:, : int(lengths.max())]
        if self.cache is None:
            return self._encode_uncached(waveforms, lengths)
        keys = [audio_key(waveforms[b, : int(n)]) for b, n in enumerate(lengths.tolist())]
        found: list[np.ndarray | None] = [self.cache.get(key) for key in keys]
        missing = [b for b, array in enumerate(found) if array is None]
        out: list[torch.Tensor | None] = [None] * len(keys)
        if missing:
            rows = torch.tensor(missing, device=waveforms.device)
            sub_lengths = lengths[rows]
            computed = self._encode_uncached(waveforms[rows, : int(sub_lengths.max())], sub_lengths)
            for b, features in zip(missing, computed):
                self.cache.put(keys[b], features.cpu().numpy())
                out[b] = features
        dtype = self.ln_speech.weight.dtype
        for b, array in enumerate(found):
            if array is not None:
                out[b] = torch.from_numpy(np.array(array)).to(device=waveforms.device, dtype=dtype)
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ speech tokens

    def _crop(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        if not self.training or self.config.train_crop_seconds is None:
            return features
        window = max(1, int(round(self.config.train_crop_seconds * self.frame_rate)))
        out = []
        for f in features:
            if f.shape[0] > window:
                start = int(torch.randint(0, f.shape[0] - window + 1, ()))
                f = f[start : start + window]
            out.append(f)
        return out

    def window_queries(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """The frozen encoders' frames of each utterance (cropped in training), and the Q-Former's outputs
        (B, W, H) with their mask (B, W): one per query of every window that holds audio."""
        features = self._crop(self.frozen_features(waveforms, lengths))
        counts = torch.tensor([f.shape[0] for f in features], device=waveforms.device)
        width = int(counts.max())
        padded = torch.zeros(len(features), width, features[0].shape[-1], device=waveforms.device)
        for b, f in enumerate(features):
            padded[b, : f.shape[0]] = f
        speech_width = self.ln_speech.normalized_shape[0]
        parts = [self.ln_speech(padded[..., :speech_width])]
        if self.beats is not None:
            parts.append(self.ln_audio(padded[..., speech_width:]))
        queries, query_mask = self.qformer(torch.cat(parts, dim=-1), lengths_to_mask(counts, width))
        return features, queries, query_mask

    def speech_embeddings(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Speech tokens in the LLM's embedding space (B, W, D_llm) and their mask (B, W): one per Q-Former query of
        every window that holds audio."""
        _, queries, query_mask = self.window_queries(waveforms, lengths)
        return self.proj(queries), query_mask

    # ------------------------------------------------------------------ prompt assembly

    def _embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llm.get_input_embeddings()(ids)

    def assemble(
        self,
        speech: torch.Tensor,
        speech_mask: torch.Tensor,
        prefix_ids: torch.Tensor,
        prefix_lengths: torch.Tensor,
        suffix_ids: torch.Tensor,
        suffix_lengths: torch.Tensor,
        suffix_content: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per utterance: prefix tokens, speech tokens, suffix tokens, packed without gaps and right-padded.

        Returns inputs_embeds (B, L, D), attention_mask (B, L) long, and the content mask (B, L) bool: the speech
        tokens and the suffix tokens flagged in ``suffix_content`` (B, Q) (the transcript, for ST1)."""
        prefix = self._embed_tokens(prefix_ids)
        suffix = self._embed_tokens(suffix_ids)
        dtype = prefix.dtype
        rows = []
        flags = []
        for b in range(speech.shape[0]):
            n_prefix, n_speech, n_suffix = int(prefix_lengths[b]), int(speech_mask[b].sum()), int(suffix_lengths[b])
            flag = torch.zeros(n_prefix + n_speech + n_suffix, dtype=torch.bool, device=speech.device)
            flag[n_prefix : n_prefix + n_speech] = True
            if suffix_content is not None:
                flag[n_prefix + n_speech :] = suffix_content[b, :n_suffix].bool()
            flags.append(flag)
            rows.append(
                torch.cat(
                    [
                        prefix[b, : int(prefix_lengths[b])],
                        speech[b, speech_mask[b]].to(dtype),
                        suffix[b, : int(suffix_lengths[b])],
                    ]
                )
            )
        total = torch.tensor([r.shape[0] for r in rows], device=speech.device)
        embeds = prefix.new_zeros(len(rows), int(total.max()), prefix.shape[-1])
        content = torch.zeros(embeds.shape[:2], dtype=torch.bool, device=speech.device)
        for b, r in enumerate(rows):
            embeds[b, : r.shape[0]] = r
            content[b, : r.shape[0]] = flags[b]
        return embeds, lengths_to_mask(total, embeds.shape[1]).long(), content

    # ------------------------------------------------------------------ outputs

    def forward(self, *inputs: torch.Tensor | None) -> torch.Tensor:
        """Class logits (B, C) (classifier) or class-name log-likelihoods (generative) of ``(waveforms, lengths,
        prefix_ids, prefix_lengths, suffix_ids, suffix_lengths[, suffix_content])``."""
        embeds, mask, content = self._sequence(*inputs)
        if self.config.output == "generative":
            return self.label_scores(embeds, mask)
        return self.classify(self._pool(embeds, mask, content))

    def embed(self, *inputs: torch.Tensor | None) -> torch.Tensor:
        """Pooled vectors (B, 2 * LLM width) before the head (classifier output only); inputs as ``forward``."""
        if self.config.output != "classifier":
            raise ValueError("a speech LLM with generative output has no pooled vector")
        return self._pool(*self._sequence(*inputs))

    def _sequence(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor,
        prefix_ids: torch.Tensor,
        prefix_lengths: torch.Tensor,
        suffix_ids: torch.Tensor,
        suffix_lengths: torch.Tensor,
        suffix_content: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The LLM's input sequence: embeddings, attention mask and the content positions (assemble)."""
        speech, speech_mask = self.speech_embeddings(waveforms, lengths)
        return self.assemble(speech, speech_mask, prefix_ids, prefix_lengths, suffix_ids, suffix_lengths, suffix_content)

    def _pool(self, embeds: torch.Tensor, mask: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        hidden = self.llm.model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
        pooled = content if self.config.pool_over == "content" else mask.bool()
        return self.head.embed(hidden.float(), pooled)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Class logits (B, C) of pooled vectors."""
        return self.head.classify(pooled)

    def pooled_mean(self) -> torch.Tensor | None:
        """The running mean of the training pooled vectors kept by the head's standardisation, or None."""
        if self.config.output != "classifier":
            return None
        return self.head.pooled_mean()

    def label_scores(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, C) log-likelihood of each class name's tokens following each prompt (constrained scoring).

        Every (utterance, class) pair is one sequence; the vocabulary projection is applied only at the positions that
        predict a class-name token."""
        ids, counts = self.label_token_ids, self.label_token_lengths
        if ids.numel() == 0:
            raise RuntimeError("generative output needs the class names' tokens: call set_label_tokens first")
        B, C, K = embeds.shape[0], ids.shape[0], ids.shape[1]
        context = mask.sum(dim=1)  # (B,)
        names = self._embed_tokens(ids)  # (C, K, D)
        width = int(context.max()) + K
        seq = embeds.new_zeros(B, C, width, embeds.shape[-1])
        seq[:, :, : embeds.shape[1]] = embeds[:, None]
        seq_mask = torch.zeros(B, C, width, dtype=torch.long, device=embeds.device)
        positions = context[:, None] + torch.arange(K, device=embeds.device)[None, :]  # (B, K)
        for b in range(B):
            n = int(context[b])
            seq[b, :, n : n + K] = names
            seq_mask[b, :, : n] = 1
            seq_mask[b, :, n : n + K] = (torch.arange(K, device=embeds.device)[None, :] < counts[:, None]).long()
        hidden = self.llm.model(
            inputs_embeds=seq.view(B * C, width, -1), attention_mask=seq_mask.view(B * C, width), use_cache=False
        ).last_hidden_state.view(B, C, width, -1)
        # The hidden state at position p predicts the token at p + 1.
        predictors = (positions - 1).clamp(min=0)  # (B, K)
        index = predictors[:, None, :, None].expand(B, C, K, hidden.shape[-1])
        picked = hidden.gather(2, index)  # (B, C, K, D)
        logprobs = torch.log_softmax(self.llm.get_output_embeddings()(picked).float(), dim=-1)
        token_lp = logprobs.gather(-1, ids[None, :, :, None].expand(B, C, K, 1)).squeeze(-1)  # (B, C, K)
        valid = torch.arange(K, device=embeds.device)[None, :] < counts[:, None]  # (C, K)
        return (token_lp * valid[None]).sum(dim=-1)

    # ------------------------------------------------------------------ training helpers

    def train(self, mode: bool = True) -> "SpeechLLM":
        super().train(mode)
        for module in (self.whisper, self.beats):
            if module is not None:
                module.eval()
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what is trained: LayerNorms, Q-Former, projection, LoRA, pooling and head, with the running
        statistics of the head's standardisation (buffers learnt from the training data)."""
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        learnt = {f"head.{name}" for name, _ in self.head.named_buffers()} if hasattr(self, "head") else set()
        return {k: v for k, v in self.state_dict().items() if k in trainable or k in learnt}

    def param_groups(
        self, lora_lr: float, lr: float, weight_decay: float = 0.0, connector_lr: float | None = None
    ) -> list[dict[str, Any]]:
        """LoRA adapters at ``lora_lr``; the connector (LayerNorms, Q-Former, projection) at ``connector_lr`` (default
        ``lr``); pooling and head at ``lr``; biases and norms without weight decay."""
        groups = lora_param_groups(self, self.llm, lora_lr, lr, weight_decay, name="head")
        parts = (self.ln_speech, getattr(self, "ln_audio", None), self.qformer, self.proj)
        connector = {id(p) for part in parts if part is not None for p in part.parameters()}
        split = []
        for group in groups:
            if group["name"] == "lora":
                split.append(group)
                continue
            for prefix, members in (
                ("connector", [p for p in group["params"] if id(p) in connector]),
                ("head", [p for p in group["params"] if id(p) not in connector]),
            ):
                if members:
                    rate = connector_lr if prefix == "connector" and connector_lr is not None else group["lr"]
                    split.append(dict(group, name=group["name"].replace("head", prefix), params=members, lr=rate))
        return split
