"""Member S1: a self-supervised (or Whisper) speech encoder, a learnable layer mix, statistics pooling and an MLP head.

The model takes raw 16 kHz waveforms with their lengths in samples and returns class logits; the acoustic front end
(Whisper's log-mel spectrogram, or wav2vec2-style waveform normalisation) lives inside the model.

Encoders:

- ``whisper``: the encoder of a transformers Whisper model. It runs on the true number of frames of the longest
  utterance in the batch instead of Whisper's fixed 30 s window, with an attention mask over the padding inside the
  batch; an utterance gives the same logits alone or padded next to a longer one. Whisper's positional table covers
  30 s (``2 * max_source_positions`` mel frames): longer input is an error, or is cut to its first 30 s with
  ``long_input="crop"``.
- ``wav2vec2``, ``wavlm``, ``hubert``: the transformers base model. Models whose CNN uses layer normalisation
  (``feat_extract_norm="layer"``, e.g. WavLM-Large, wav2vec2-large-lv60, HuBERT-Large) receive an attention mask and
  are padding-invariant. Models with a group-normalised CNN (wav2vec2-base, WavLM-Base, HuBERT-Base) normalise over
  the whole padded sequence by design: they get zero-padded input without an attention mask (the transformers
  recommendation for them), so their output for an utterance depends slightly on the padding of its batch; pooling
  still ignores padded frames.

Hidden states are numbered like transformers' ``output_hidden_states``: index 0 is the input of the first transformer
layer, index i the output of layer i, and the last index the encoder's final output (after its final layer norm
where it has one).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from abhinaya.nn.head import PooledClassifierHead, RenamedStateKeys
from abhinaya.nn.pooling import POOLINGS, lengths_to_mask
from abhinaya.nn.spec_augment import SpecAugmentConfig, spec_augment
from abhinaya.nn.standardize import HEAD_NORMS
from abhinaya.nn.whisper_frontend import (
    WHISPER_TYPES,
    WhisperLogMel,
    build_encoder,
    check_encoder_overrides,
    encoder_config_dict,
    whisper_frontend,
)

__all__ = ["SSLClassifier", "SSLClassifierConfig"]

WAV2VEC2_FAMILY_TYPES = ("wav2vec2", "wavlm", "hubert")
FREEZE_MODES = ("none", "feature_extractor", "encoder")
LONG_INPUT_MODES = ("error", "crop")


@dataclass
class SSLClassifierConfig:
    """Settings of :class:`SSLClassifier`; the only place their defaults live.

    Attributes:
        encoder: model name or local folder of the pretrained encoder; :meth:`SSLClassifier.from_pretrained_encoder`
            resolves it with ``abhinaya.weights.cache.resolve_model_path``.
        encoder_type: transformers ``model_type`` of the encoder ("whisper", "wavlm", "wav2vec2", "hubert");
            taken from ``encoder_config["model_type"]`` when omitted.
        encoder_config: keyword arguments of a transformers config; the constructor builds a random-weight encoder
            from it. ``from_pretrained_encoder`` fills it from the pretrained folder so a saved run rebuilds offline.
        encoder_overrides: transformers config settings applied on top of ``encoder_config`` (also of a pretrained
            encoder's), for the settings that change training and not the weights: dropout rates, LayerDrop,
            wav2vec2-style time masking, e.g. ``{"dropout": 0.1, "attention_dropout": 0.1}``. Each name must be a
            setting of the encoder's config class.
        layer: hidden state fed to pooling (negative counts from the end); None = learnable softmax-weighted sum of
            hidden states (s3prl style).
        layers: hidden-state indices mixed by the weighted sum (default: all, embedding output included).
            Transformer layers above the highest hidden state used cannot affect the logits: they are frozen and,
            for Whisper, not run.
        pooling: "attentive" (attentive statistics pooling) or "mean_std".
        attention_dim: hidden size of the attentive pooling's scoring network.
        head_hidden: hidden size of the MLP head.
        dropout: dropout of the MLP head.
        head_norm: normalisation of the pooled vector before the head: None (none, as the MSP-Podcast baseline),
            "running" (each dimension standardised with running statistics of the training data, in training as at
            inference), "batch" (BatchNorm) or "layer" (LayerNorm over the vector). The pooled statistics of a
            speech encoder's inner layers differ in scale by orders of magnitude between dimensions; an MLP head
            trained on them unnormalised can collapse onto one class (BENCHMARKS.md, S1 head normalisation).
        freeze: "none", "feature_extractor" (the CNN front end; for Whisper conv1, conv2 and the positional
            table) or "encoder" (the whole encoder).
        freeze_layers: also freeze the first k transformer layers and everything below them.
        num_labels: number of classes.
        sample_rate: sample rate of the input waveforms in Hz; every supported encoder expects 16000.
        normalize_waveform: wav2vec2-family only: zero mean, unit variance per utterance over its valid samples.
        long_input: Whisper only, for input over 30 s: "error" or "crop" (keep the first 30 s).
        spec_augment: Whisper only: SpecAugment time and frequency masks on the log-mel input, in training only
            (off by default). The wav2vec2 family masks its own features through ``encoder_overrides``
            (``mask_time_prob``, ``mask_feature_prob``).
        dimensions: names of emotion dimensions (``[arousal, valence, dominance]``) a regression head predicts
            beside the classes, from the manifest's ``attributes`` (trained with ``loss.dimensions_weight``);
            empty: none.
    """

    encoder: str = "whisper-base"
    encoder_type: str | None = None
    encoder_config: dict[str, Any] | None = None
    encoder_overrides: dict[str, Any] = field(default_factory=dict)
    layer: int | None = None
    layers: list[int] | None = None
    pooling: str = "attentive"
    attention_dim: int = 128
    head_hidden: int = 256
    dropout: float = 0.2
    head_norm: str | None = None
    freeze: str = "feature_extractor"
    freeze_layers: int = 0
    num_labels: int = 8
    sample_rate: int = 16000
    normalize_waveform: bool = True
    long_input: str = "error"
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    dimensions: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.head_norm is not None and self.head_norm not in HEAD_NORMS:
            raise ValueError(f"head_norm must be None or one of {HEAD_NORMS}, got {self.head_norm!r}")
        if self.freeze not in FREEZE_MODES:
            raise ValueError(f"freeze must be one of {FREEZE_MODES}, got {self.freeze!r}")
        if self.long_input not in LONG_INPUT_MODES:
            raise ValueError(f"long_input must be one of {LONG_INPUT_MODES}, got {self.long_input!r}")
        if self.layer is not None and self.layers is not None:
            raise ValueError("set either layer (one hidden state) or layers (a weighted sum), not both")
        if self.layers is not None:
            self.layers = [int(i) for i in self.layers]
            if not self.layers:
                raise ValueError("layers must name at least one hidden state")
        if self.freeze_layers < 0:
            raise ValueError(f"freeze_layers must be >= 0, got {self.freeze_layers}")
        if self.num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {self.num_labels}")
        if self.sample_rate != 16000:
            raise ValueError(f"the supported encoders take 16000 Hz audio; resample the input (got {self.sample_rate})")

    def resolved_encoder_type(self) -> str:
        """The encoder's transformers ``model_type``."""
        from_config = (self.encoder_config or {}).get("model_type")
        if self.encoder_type and from_config and self.encoder_type != from_config:
            raise ValueError(
                f"encoder_type {self.encoder_type!r} disagrees with encoder_config model_type {from_config!r}"
            )
        model_type = self.encoder_type or from_config
        if model_type is None:
            raise ValueError("encoder_type is required (or a model_type entry in encoder_config)")
        if model_type not in WHISPER_TYPES + WAV2VEC2_FAMILY_TYPES:
            supported = WHISPER_TYPES + WAV2VEC2_FAMILY_TYPES
            raise ValueError(f"unsupported encoder_type {model_type!r}; supported: {supported}")
        return model_type


class SSLClassifier(RenamedStateKeys, nn.Module):
    """Speech encoder -> weighted layer sum (or one layer) -> statistics pooling -> MLP head -> logits.

    The constructor builds the encoder from ``config.encoder_config`` with random weights and never loads weights;
    :meth:`from_pretrained_encoder` loads a pretrained encoder (the head stays random).
    """

    # Runs saved before pooling, head norm and MLP became one head module still load.
    renamed_state_keys = (
        ("pooling.", "head.pooling."),
        ("head_norm.", "head.norm."),
        ("head.0.", "head.fc1."),
        ("head.3.", "head.fc2."),
    )

    def __init__(self, config: SSLClassifierConfig):
        super().__init__()
        if config.encoder_config is None:
            raise ValueError(
                "encoder_config is required to build the encoder; "
                "use SSLClassifier.from_pretrained_encoder(config) to load a pretrained one"
            )
        self.config = config
        self.encoder_type = config.resolved_encoder_type()
        self.is_whisper = self.encoder_type in WHISPER_TYPES
        if config.spec_augment.enabled and not self.is_whisper:
            raise ValueError(
                f"spec_augment masks Whisper's log-mel input; a {self.encoder_type} encoder masks its own features "
                "in training through encoder_overrides (mask_time_prob, mask_feature_prob)"
            )
        check_encoder_overrides(self.encoder_type, config.encoder_overrides)
        self.encoder = build_encoder(self.encoder_type, {**config.encoder_config, **config.encoder_overrides})
        hf_config = self.encoder.config
        self.hidden_size = int(hf_config.d_model if self.is_whisper else hf_config.hidden_size)
        self.num_layers = len(self._transformer_layers())

        if self.is_whisper:
            self.log_mel = WhisperLogMel(hf_config.num_mel_bins, config.sample_rate)
            self.max_mel_frames = (
                hf_config.max_source_positions * self.encoder.conv1.stride[0] * self.encoder.conv2.stride[0]
            )

        self.layer_indices = self._resolve_layer_indices()
        if config.layer is None:
            self.layer_weights = nn.Parameter(torch.zeros(len(self.layer_indices)))
        else:
            self.register_parameter("layer_weights", None)

        self.head = PooledClassifierHead.from_settings(self.hidden_size, config, input_dropout=0.0, activation="relu")
        # Multi-task: a regression head for emotion dimensions (arousal, valence, dominance) beside the classes,
        # on the same pooled vector; its own layer norm, so the class head's running statistics see one pass.
        self.dimension_head = None
        if config.dimensions:
            pooled = 2 * self.hidden_size
            self.dimension_head = nn.Sequential(
                nn.LayerNorm(pooled), nn.Linear(pooled, config.head_hidden), nn.ReLU(), nn.Dropout(config.dropout),
                nn.Linear(config.head_hidden, len(config.dimensions)),
            )
        self._frozen_module_names: list[str] = []
        self._apply_freezing()

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def from_pretrained_encoder(cls, config: SSLClassifierConfig) -> "SSLClassifier":
        """Build the classifier around the pretrained encoder named by ``config.encoder`` (local files only).

        The returned model's ``config`` carries the encoder's architecture in ``encoder_config``, so
        ``SSLClassifier(model.config)`` rebuilds it offline for loading a saved state dict.
        """
        from transformers import AutoConfig, AutoModel, WhisperModel

        from abhinaya.weights.cache import resolve_model_path

        path = resolve_model_path(config.encoder)
        hf_config = AutoConfig.from_pretrained(path, local_files_only=True)
        resolved = dataclasses.replace(
            config, encoder_type=hf_config.model_type, encoder_config=encoder_config_dict(hf_config)
        )
        model = cls(resolved)
        if model.is_whisper:
            pretrained = WhisperModel.from_pretrained(path, local_files_only=True, dtype=torch.float32).encoder
        else:
            pretrained = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        model.encoder.load_state_dict(pretrained.state_dict(), strict=True)
        return model

    def _transformer_layers(self) -> nn.ModuleList:
        return self.encoder.layers if self.is_whisper else self.encoder.encoder.layers

    def _final_norm(self) -> nn.Module | None:
        """The layer norm applied after the last transformer layer, if the encoder has one."""
        if self.is_whisper:
            return self.encoder.layer_norm
        if getattr(self.encoder.config, "do_stable_layer_norm", False):
            return self.encoder.encoder.layer_norm
        return None

    @property
    def num_hidden_states(self) -> int:
        """Number of hidden states (transformer layers + 1)."""
        return self.num_layers + 1

    def _resolve_layer_indices(self) -> list[int]:
        n = self.num_hidden_states
        if self.config.layer is not None:
            requested = [self.config.layer]
        elif self.config.layers is not None:
            requested = list(self.config.layers)
        else:
            return list(range(n))
        indices = []
        for i in requested:
            if not -n <= i < n:
                raise ValueError(f"hidden-state index {i} out of range for an encoder with {n} hidden states")
            indices.append(i % n)
        if len(set(indices)) != len(indices):
            raise ValueError(f"layers has duplicate entries: {requested}")
        return sorted(indices)

    def _apply_freezing(self) -> None:
        cfg = self.config
        layers = self._transformer_layers()
        if cfg.freeze_layers > self.num_layers:
            raise ValueError(f"freeze_layers={cfg.freeze_layers} but the encoder has {self.num_layers} layers")

        if cfg.freeze == "encoder":
            self.encoder.requires_grad_(False)
        elif cfg.freeze_layers > 0:
            # Everything below layer k: the front end, then layers 0..k-1.
            keep = {id(p) for p in layers[cfg.freeze_layers :].parameters()}
            norm = self._final_norm()
            if norm is not None:
                keep |= {id(p) for p in norm.parameters()}
            for p in self.encoder.parameters():
                if id(p) not in keep:
                    p.requires_grad_(False)
        elif cfg.freeze == "feature_extractor":
            if self.is_whisper:
                for module in (self.encoder.conv1, self.encoder.conv2, self.encoder.embed_positions):
                    module.requires_grad_(False)
            else:
                extractor = self.encoder.feature_extractor
                if hasattr(extractor, "_freeze_parameters"):
                    extractor._freeze_parameters()
                else:
                    extractor.requires_grad_(False)
        if self.is_whisper:
            self.encoder.embed_positions.requires_grad_(False)

        # Layers above the highest hidden state used never influence the logits; freezing them keeps optimizers and
        # DDP free of parameters without gradients.
        highest = max(self.layer_indices)
        for layer in layers[highest:]:
            layer.requires_grad_(False)
        norm = self._final_norm()
        if norm is not None and highest < self.num_layers:
            norm.requires_grad_(False)

        self._frozen_module_names = self._outermost_frozen_modules()
        self.train(self.training)

    def _outermost_frozen_modules(self) -> list[str]:
        """Names of the largest encoder submodules whose parameters are all frozen."""
        names: list[str] = []
        for name, module in self.encoder.named_modules():
            params = list(module.parameters())
            if not params or any(p.requires_grad for p in params):
                continue
            if any(name.startswith(parent + ".") or parent == "" for parent in names):
                continue
            names.append(name)
        return ["encoder" if n == "" else f"encoder.{n}" for n in names]

    def train(self, mode: bool = True) -> "SSLClassifier":
        """Switch train/eval mode; frozen encoder parts always stay in eval mode (no dropout, no SpecAugment)."""
        super().train(mode)
        for name in self._frozen_module_names:
            self.get_submodule(name).eval()
        return self

    # ------------------------------------------------------------------ optimisation

    def param_groups(self, encoder_lr: float, head_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """Optimizer parameter groups of the trainable parameters, each exactly once.

        Encoder parameters get ``encoder_lr``; the rest (layer weights, pooling, head) ``head_lr``. Matrices and
        convolution kernels get ``weight_decay``; biases, norms and layer weights get none. Empty groups are left
        out; each group has a ``name`` for logging.
        """
        encoder_ids = {id(p) for p in self.encoder.parameters()}
        buckets: dict[str, list[nn.Parameter]] = {
            "encoder": [],
            "encoder_no_decay": [],
            "head": [],
            "head_no_decay": [],
        }
        for p in self.parameters():
            if not p.requires_grad:
                continue
            part = "encoder" if id(p) in encoder_ids else "head"
            buckets[part if p.ndim >= 2 else f"{part}_no_decay"].append(p)
        groups = []
        for name, params in buckets.items():
            if params:
                groups.append(
                    {
                        "name": name,
                        "params": params,
                        "lr": encoder_lr if name.startswith("encoder") else head_lr,
                        "weight_decay": 0.0 if name.endswith("no_decay") else weight_decay,
                    }
                )
        return groups

    # ------------------------------------------------------------------ forward

    def _check_lengths(self, waveforms: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        if waveforms.dim() != 2:
            raise ValueError(f"waveforms must be (B, S), got shape {tuple(waveforms.shape)}")
        if lengths is None:
            return torch.full((waveforms.shape[0],), waveforms.shape[1], dtype=torch.long, device=waveforms.device)
        lengths = torch.as_tensor(lengths, device=waveforms.device).long()
        if lengths.shape != (waveforms.shape[0],):
            raise ValueError(f"lengths must be (B,) = ({waveforms.shape[0]},), got {tuple(lengths.shape)}")
        if (lengths <= 0).any():
            raise ValueError(f"every utterance needs at least one sample; lengths={lengths.tolist()}")
        if (lengths > waveforms.shape[1]).any():
            raise ValueError(f"lengths exceed the waveform width {waveforms.shape[1]}: {lengths.tolist()}")
        return lengths

    def hidden_states(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        """Hidden states of the encoder that this model uses.

        Args:
            waveforms: (B, S) float, 16 kHz, zero-padded on the right.
            lengths: (B,) valid samples per utterance; None = all S.

        Returns:
            a dict {hidden-state index: (B, T, D)} for the indices in ``layer_indices``, and the frame mask (B, T)
            (True = valid frame).
        """
        lengths = self._check_lengths(waveforms, lengths)
        frozen = self.config.freeze == "encoder"
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            if self.is_whisper:
                return self._whisper_hidden_states(waveforms, lengths)
            return self._wav2vec2_hidden_states(waveforms, lengths)

    def _whisper_hidden_states(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        frames = self.log_mel.num_frames(lengths)
        too_long = frames > self.max_mel_frames
        if too_long.any():
            max_samples = self.max_mel_frames * self.log_mel.hop_length
            if self.config.long_input == "error":
                seconds = lengths[too_long].max().item() / self.config.sample_rate
                limit = max_samples / self.config.sample_rate
                raise ValueError(
                    f"utterance of {seconds:.2f} s exceeds the Whisper encoder's {limit:.0f} s window "
                    f"({self.max_mel_frames} mel frames); cut long audio into segments, "
                    "or set long_input='crop' to keep the first 30 s"
                )
            lengths = lengths.clamp(max=max_samples)
            waveforms = waveforms[:, :max_samples]
        with torch.no_grad():
            mel, frames = self.log_mel(waveforms, lengths)
            if self.training:
                mel = spec_augment(mel, frames, self.config.spec_augment)
        return self.whisper_hidden_states_from_mel(mel, frames)

    def whisper_hidden_states_from_mel(
        self, mel: torch.Tensor, frames: torch.Tensor
    ) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        """Run the Whisper encoder on log-mel features of their true length.

        Args:
            mel: (B, n_mels, F) log-mel features, F <= 2 * max_source_positions.
            frames: (B,) valid mel frames per utterance.

        Returns:
            as :meth:`hidden_states`; T = ceil(F / 2).
        """
        enc = self.encoder
        if mel.shape[-1] > self.max_mel_frames:
            raise ValueError(f"at most {self.max_mel_frames} mel frames fit the positional table, got {mel.shape[-1]}")
        layers = self._transformer_layers()
        frozen_prefix = self.config.freeze == "encoder" or self.config.freeze_layers > 0
        grad = torch.is_grad_enabled()
        highest = max(self.layer_indices)
        keep = set(self.layer_indices)
        out: dict[int, torch.Tensor] = {}

        with torch.set_grad_enabled(grad and not (frozen_prefix or self.config.freeze == "feature_extractor")):
            x, mask, attention_mask = whisper_frontend(enc, mel, frames)
        x = F.dropout(x, p=enc.dropout, training=enc.training)

        if 0 in keep:
            out[0] = x
        for i, layer in enumerate(layers[:highest]):
            skipped = layer.training and enc.layerdrop > 0.0 and bool(torch.rand([]) < enc.layerdrop)
            if not skipped:
                with torch.set_grad_enabled(grad and not (frozen_prefix and i < self.config.freeze_layers)):
                    x = layer(x, attention_mask)
                if isinstance(x, tuple):
                    x = x[0]
            if i + 1 == self.num_layers:
                x = enc.layer_norm(x)
            if i + 1 in keep:
                out[i + 1] = x
        return out, mask

    def _wav2vec2_hidden_states(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        sample_mask = lengths_to_mask(lengths, waveforms.shape[1])
        x = waveforms.float() * sample_mask
        if self.config.normalize_waveform:
            counts = lengths.unsqueeze(1).float()
            mean = x.sum(dim=1, keepdim=True) / counts
            var = ((x - mean) ** 2 * sample_mask).sum(dim=1, keepdim=True) / counts
            x = (x - mean) / torch.sqrt(var + 1e-7) * sample_mask
        frame_lengths = self.encoder._get_feat_extract_output_lengths(lengths)
        if (frame_lengths < 1).any():
            raise ValueError(
                f"utterance too short for the encoder's convolutional front end: lengths={lengths.tolist()} samples"
            )
        use_mask = getattr(self.encoder.config, "feat_extract_norm", "layer") == "layer"
        output = self.encoder(
            x.to(self.encoder.dtype),
            attention_mask=sample_mask.long() if use_mask else None,
            output_hidden_states=True,
        )
        states = list(output.hidden_states)
        states[-1] = output.last_hidden_state
        mask = lengths_to_mask(frame_lengths, states[0].shape[1])
        return {i: states[i] for i in self.layer_indices}, mask

    def mix_layers(self, states: dict[int, torch.Tensor]) -> torch.Tensor:
        """Combine the used hidden states into one sequence (B, T, D)."""
        if self.layer_weights is None:
            return states[self.layer_indices[0]]
        weights = torch.softmax(self.layer_weights, dim=0)
        mixed = None
        for w, i in zip(weights, self.layer_indices):
            term = w * states[i]
            mixed = term if mixed is None else mixed + term
        return mixed

    def embed(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled utterance embeddings (B, 2 * D) before the head."""
        states, mask = self.hidden_states(waveforms, lengths)
        return self.head.embed(self.mix_layers(states), mask)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_labels) of pooled embeddings (B, 2 * D)."""
        return self.head.classify(pooled)

    def pooled_mean(self) -> torch.Tensor | None:
        """The running mean of the training embeddings kept by ``head_norm`` ("running" or "batch"), or None."""
        return self.head.pooled_mean()

    def dimensions(self, pooled: torch.Tensor) -> torch.Tensor:
        """Emotion dimensions (B, len(config.dimensions)) of pooled embeddings (B, 2 * D)."""
        if self.dimension_head is None:
            raise ValueError("this model has no dimension head (model.dimensions is empty)")
        return self.dimension_head(pooled)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None, with_dimensions: bool = False):
        """Class logits (B, num_labels) of waveforms (B, S) at 16 kHz with ``lengths`` (B,) in samples; with
        ``with_dimensions``, ``(logits, dimensions)`` from one pass."""
        pooled = self.embed(waveforms, lengths)
        if with_dimensions:
            return self.classify(pooled), self.dimensions(pooled)
        return self.classify(pooled)
