"""BEATs audio encoder (Chen et al., "BEATs: Audio Pre-Training with Acoustic Tokenizers", ICML 2023).

SALMONN uses BEATs, frozen, as its non-speech audio encoder next to Whisper. Parameter names equal those of the
official state dict, so the official checkpoints (``BEATs_iter3_plus_AS2M*.pt``: a dict with a ``cfg`` dict and a
``model`` state dict) load with strict key checking through :func:`load_beats_checkpoint`.

Pipeline: 16 kHz waveform x 2**15 -> Kaldi 128-bin log-mel fbank (25 ms window, 10 ms shift) normalised as
(x - 15.41663) / (2 * 6.55582) -> 16x16 patches (Conv2d, stride 16) flattened time-major, the 8 frequency patches of
a time step consecutive -> LayerNorm -> Linear 512->768 -> convolutional positional embedding -> 12 post-LN ("deep
norm") transformer layers with a gated relative position bias shared by all layers.

Padding is exact (the official code approximates it): with Kaldi's ``snip_edges`` framing, frame t reads samples
[160 t, 160 t + 400), so an utterance's frames never touch its padding; a patch time step is valid when its 16 frames
are real; padded positions are zeroed before the positional convolution and ignored as attention keys. An utterance
gets the same features alone or in a batch. Call :meth:`BEATs.freeze` to use it frozen (no gradients, eval mode).
"""

from __future__ import annotations

import dataclasses
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BEATs", "BEATsConfig", "kaldi_mel_banks", "load_beats_checkpoint", "num_fbank_frames",
           "relative_position_buckets"]  # fmt: skip

SAMPLE_RATE = 16000
FRAME_LENGTH = 400  # samples: 25 ms at 16 kHz
FRAME_SHIFT = 160  # samples: 10 ms at 16 kHz
FFT_SIZE = 512  # the frame zero-padded to the next power of two
PREEMPHASIS = 0.97
LOW_FREQ_HZ = 20.0  # Kaldi's default lowest mel edge; the highest is Nyquist
LOG_FLOOR = torch.finfo(torch.float32).eps  # Kaldi floors energies at float epsilon before the log
WAVEFORM_SCALE = 2.0**15  # BEATs feeds the fbank 16-bit integer amplitudes

# Keys of the official ``cfg`` dict. Architecture keys must be present; optional keys default to BEATsConfig's
# values; the ignored ones only steer training (layer drop, layer-wise gradient scaling) and have no effect here.
_ARCHITECTURE_KEYS = (
    "input_patch_size", "embed_dim", "conv_bias", "encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim",
    "encoder_attention_heads", "activation_fn", "layer_norm_first", "deep_norm", "conv_pos", "conv_pos_groups",
    "relative_position_embedding", "num_buckets", "max_distance", "gru_rel_pos",
)  # fmt: skip
_OPTIONAL_KEYS = (
    "dropout", "attention_dropout", "activation_dropout", "dropout_input", "finetuned_model", "predictor_dropout",
    "predictor_class",
)  # fmt: skip
IGNORED_OFFICIAL_KEYS = ("encoder_layerdrop", "layer_wise_gradient_decay_ratio")
_ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}


@dataclass
class BEATsConfig:
    """Settings of :class:`BEATs`; the only place their defaults live.

    Defaults are those of the official BEATs_iter3+ checkpoints (pre-trained and AudioSet fine-tuned alike), and the
    field names are the official ``cfg`` keys, except the front-end fields at the end, which the official code fixes.

    Attributes:
        input_patch_size: side of the square fbank patches (frames x mel bins) and the stride of their embedding.
        embed_dim: patch-embedding width, projected to ``encoder_embed_dim`` when different.
        conv_bias: whether the patch-embedding convolution has a bias.
        encoder_layers, encoder_embed_dim, encoder_ffn_embed_dim, encoder_attention_heads: transformer size.
        activation_fn: FFN activation, "gelu" (exact erf form) or "relu".
        layer_norm_first: pre-LN layers (with a final LayerNorm); False = post-LN.
        deep_norm: post-LN with residuals scaled by (2 * encoder_layers) ** 0.25; excludes ``layer_norm_first``.
        conv_pos, conv_pos_groups: kernel width and groups of the weight-normalised positional convolution.
        relative_position_embedding: add a bucketed relative position bias (T5-style, bidirectional) to attention.
        num_buckets, max_distance: buckets of that bias (half per direction) and the distance of the last bucket.
        gru_rel_pos: scale the bias by a gate computed from each query (as in WavLM).
        dropout, attention_dropout, activation_dropout, dropout_input: active in training mode only.
        finetuned_model: build the AudioSet classifier (``predictor``) that fine-tuned checkpoints carry.
        predictor_dropout, predictor_class: its dropout and number of classes (527 AudioSet labels).
        num_mel_bins: fbank bins (128 for every official checkpoint).
        fbank_mean, fbank_std: normalisation constants; the fbank becomes (x - mean) / (2 * std).
    """

    input_patch_size: int = 16
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_norm_first: bool = False
    deep_norm: bool = True
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = True
    num_buckets: int = 320
    max_distance: int = 800
    gru_rel_pos: bool = True
    dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    dropout_input: float = 0.0
    finetuned_model: bool = False
    predictor_dropout: float = 0.0
    predictor_class: int = 527
    num_mel_bins: int = 128
    fbank_mean: float = 15.41663
    fbank_std: float = 6.55582

    def __post_init__(self) -> None:
        if self.activation_fn not in _ACTIVATIONS:
            raise ValueError(f"activation_fn must be one of {sorted(_ACTIVATIONS)}, got {self.activation_fn!r}")
        if self.deep_norm and self.layer_norm_first:
            raise ValueError("deep_norm and layer_norm_first exclude each other")
        if self.encoder_embed_dim % self.encoder_attention_heads:
            raise ValueError("encoder_embed_dim must be divisible by encoder_attention_heads")
        if self.encoder_embed_dim % self.conv_pos_groups:
            raise ValueError("encoder_embed_dim must be divisible by conv_pos_groups")
        if self.num_mel_bins % self.input_patch_size:
            raise ValueError("num_mel_bins must be divisible by input_patch_size")
        if self.relative_position_embedding and not self.max_distance > self.num_buckets // 4 >= 1:
            raise ValueError("the relative position bias needs max_distance > num_buckets // 4 >= 1")

    @property
    def min_samples(self) -> int:
        """Shortest input in samples: one patch needs ``input_patch_size`` fbank frames."""
        return FRAME_LENGTH + (self.input_patch_size - 1) * FRAME_SHIFT

    @classmethod
    def tiny(cls, **overrides: Any) -> "BEATsConfig":
        """A small random-weight configuration for tests: the real front end (128 bins, 16x16 patches), 2 layers
        of width 32 and a 32-bucket relative position bias."""
        values = dict(
            embed_dim=16, encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=4,
            conv_pos=16, conv_pos_groups=4, num_buckets=32, max_distance=64, predictor_class=5,
        )  # fmt: skip
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_official_cfg(cls, cfg: Mapping[str, Any]) -> "BEATsConfig":
        """Map the ``cfg`` dict of an official checkpoint onto a config. Unknown keys and missing architecture keys
        are errors; training-only keys (``IGNORED_OFFICIAL_KEYS``) are dropped; absent dropout/classifier keys take
        this class's defaults."""
        known = set(_ARCHITECTURE_KEYS) | set(_OPTIONAL_KEYS) | set(IGNORED_OFFICIAL_KEYS)
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"unknown keys in the BEATs cfg: {unknown}")
        missing = [key for key in _ARCHITECTURE_KEYS if key not in cfg]
        if missing:
            raise ValueError(f"the BEATs cfg lacks architecture keys: {missing}")
        types = {field.name: field.type for field in dataclasses.fields(cls)}
        casts = {"int": int, "float": float, "bool": bool, "str": str}
        values = {key: casts[types[key]](value) for key, value in cfg.items() if key not in IGNORED_OFFICIAL_KEYS}
        return cls(**values)


def num_fbank_frames(lengths: Tensor) -> Tensor:
    """Kaldi ``snip_edges`` frame count (B,) of inputs of ``lengths`` (B,) samples: frames that fit entirely."""
    lengths = torch.as_tensor(lengths)
    return torch.where(lengths >= FRAME_LENGTH, 1 + (lengths - FRAME_LENGTH) // FRAME_SHIFT, 0)


def kaldi_mel_banks(num_bins: int = 128, sample_rate: int = SAMPLE_RATE, fft_size: int = FFT_SIZE) -> Tensor:
    """Kaldi's triangular mel filters, (num_bins, fft_size // 2 + 1) float64.

    Mel scale 1127 ln(1 + f / 700); edges equally spaced in mel from 20 Hz to Nyquist; each triangle is evaluated in
    the mel domain at the FFT bin frequencies; the Nyquist bin gets no weight (Kaldi drops it).
    """
    to_mel = lambda hz: 1127.0 * torch.log1p(torch.as_tensor(hz, dtype=torch.float64) / 700.0)  # noqa: E731
    low, high = to_mel(LOW_FREQ_HZ), to_mel(sample_rate / 2)
    step = (high - low) / (num_bins + 1)
    left = low + step * torch.arange(num_bins, dtype=torch.float64).unsqueeze(1)
    centre, right = left + step, left + 2 * step
    bin_mel = to_mel(torch.arange(fft_size // 2, dtype=torch.float64) * (sample_rate / fft_size)).unsqueeze(0)
    rising = (bin_mel - left) / (centre - left)
    falling = (right - bin_mel) / (right - centre)
    banks = torch.minimum(rising, falling).clamp(min=0.0)
    return F.pad(banks, (0, 1))


def relative_position_buckets(relative: Tensor, num_buckets: int, max_distance: int) -> Tensor:
    """Bucket (long, same shape) of each relative position (key index - query index), as in BEATs/WavLM.

    Half the buckets are for positive offsets. Per direction, distances below a quarter of ``num_buckets`` get a
    bucket each; larger ones share log-spaced buckets up to ``max_distance``, beyond which the last bucket is used.
    The float32 arithmetic follows the official code so that boundary cases fall in the same bucket.
    """
    half = num_buckets // 2
    exact = half // 2
    buckets = (relative > 0).long() * half
    distance = relative.abs()
    log_ratio = torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (half - exact)).long()).clamp(max=half - 1)
    return buckets + torch.where(distance < exact, distance, far)


class _WeightNormConv1d(nn.Module):
    """Grouped, same-length Conv1d whose kernel is ``weight_g * weight_v / ||weight_v||``, the norm taken over all
    axes but the kernel-position axis: the parameters of ``torch.nn.utils.weight_norm(conv, dim=2)``."""

    def __init__(self, channels: int, kernel_size: int, groups: int):
        super().__init__()
        self.kernel_size, self.groups = kernel_size, groups
        weight_v = torch.randn(channels, channels // groups, kernel_size) * math.sqrt(4.0 / (kernel_size * channels))
        self.weight_v = nn.Parameter(weight_v)
        self.weight_g = nn.Parameter(weight_v.norm(dim=(0, 1), keepdim=True))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, N) -> (B, C, N)."""
        weight = self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))
        out = F.conv1d(x, weight, self.bias, padding=self.kernel_size // 2, groups=self.groups)
        return out[..., : x.shape[-1]]  # an even kernel yields one extra step at the end


class BEATsSelfAttention(nn.Module):
    """Multi-head self-attention with the gated relative position bias."""

    def __init__(self, config: BEATsConfig):
        super().__init__()
        dim, self.num_heads = config.encoder_embed_dim, config.encoder_attention_heads
        self.head_dim = dim // self.num_heads
        self.dropout = config.attention_dropout
        self.k_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.q_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        # ``relative_attention_bias`` (an nn.Embedding shared by every layer) is attached by BEATsEncoder.
        self.gru_rel_pos = config.gru_rel_pos
        if self.gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, self.num_heads, 1, 1))

    def forward(self, x: Tensor, position_bias: Tensor | None, padding_mask: Tensor | None) -> Tensor:
        """x (B, N, D); position_bias (H, N, N) or None; padding_mask (B, N) bool, True = padded key."""
        batch, length, dim = x.shape
        split = lambda t: t.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))  # (B, H, N, hd)
        bias = None
        if position_bias is not None:
            bias = position_bias.unsqueeze(0).to(q.dtype)
            if self.gru_rel_pos:  # per-query gate in (1, 2 * grep_a + 1), from the unscaled query
                gates = torch.sigmoid(self.grep_linear(q).view(batch, self.num_heads, length, 2, 4).sum(-1))
                gate_a, gate_b = gates[..., :1], gates[..., 1:]
                bias = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * bias
        if padding_mask is not None:
            ignored = torch.zeros(batch, 1, 1, length, dtype=q.dtype, device=q.device)
            ignored = ignored.masked_fill(padding_mask[:, None, None, :], float("-inf"))
            bias = ignored if bias is None else bias + ignored
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class BEATsEncoderLayer(nn.Module):
    """Transformer layer: post-LN (residuals scaled by the deep-norm alpha) or pre-LN."""

    def __init__(self, config: BEATsConfig):
        super().__init__()
        dim = config.encoder_embed_dim
        self.layer_norm_first = config.layer_norm_first
        self.residual_scale = (2.0 * config.encoder_layers) ** 0.25 if config.deep_norm else 1.0
        self.activation = _ACTIVATIONS[config.activation_fn]
        self.self_attn = BEATsSelfAttention(config)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, config.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(config.dropout)
        self.activation_dropout = nn.Dropout(config.activation_dropout)

    def _feed_forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc2(self.activation_dropout(self.activation(self.fc1(x)))))

    def forward(self, x: Tensor, position_bias: Tensor | None, padding_mask: Tensor | None) -> Tensor:
        """(B, N, D) -> (B, N, D)."""
        if self.layer_norm_first:
            x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), position_bias, padding_mask))
            return x + self._feed_forward(self.final_layer_norm(x))
        attended = self.dropout(self.self_attn(x, position_bias, padding_mask))
        x = self.self_attn_layer_norm(x * self.residual_scale + attended)
        return self.final_layer_norm(x * self.residual_scale + self._feed_forward(x))


class BEATsEncoder(nn.Module):
    """Convolutional positional embedding followed by the transformer layers."""

    def __init__(self, config: BEATsConfig):
        super().__init__()
        dim = config.encoder_embed_dim
        self.config = config
        self.pos_conv = nn.Sequential(_WeightNormConv1d(dim, config.conv_pos, config.conv_pos_groups))
        self.layers = nn.ModuleList(BEATsEncoderLayer(config) for _ in range(config.encoder_layers))
        if config.relative_position_embedding:
            # One table for all layers, as in the official model; the state dict lists it under every layer.
            table = nn.Embedding(config.num_buckets, config.encoder_attention_heads)
            for layer in self.layers:
                layer.self_attn.relative_attention_bias = table
        self.layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(config.dropout)

    def position_bias(self, length: int, device: torch.device) -> Tensor | None:
        """Ungated relative position bias (H, N, N) for N = ``length`` positions, or None."""
        if not self.config.relative_position_embedding:
            return None
        positions = torch.arange(length, device=device)
        relative = positions.unsqueeze(0) - positions.unsqueeze(1)  # [query, key] = key - query
        buckets = relative_position_buckets(relative, self.config.num_buckets, self.config.max_distance)
        return self.layers[0].self_attn.relative_attention_bias(buckets).permute(2, 0, 1)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """x (B, N, D), padding_mask (B, N) bool True = padded -> (B, N, D)."""
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        x = x + F.gelu(self.pos_conv(x.transpose(1, 2))).transpose(1, 2)
        if not self.config.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        bias = self.position_bias(x.shape[1], x.device)
        for layer in self.layers:
            x = layer(x, bias, padding_mask)
        return self.layer_norm(x) if self.config.layer_norm_first else x


class BEATs(nn.Module):
    """BEATs encoder: 16 kHz waveforms -> patch features (B, N, encoder_embed_dim) with a validity mask.

    Built with random weights; :func:`load_beats_checkpoint` loads an official checkpoint. With
    ``config.finetuned_model`` the AudioSet classifier ``predictor`` exists (so fine-tuned checkpoints load) but
    ``forward`` still returns encoder features; :meth:`audioset_logits` applies the classifier.
    """

    def __init__(self, config: BEATsConfig):
        super().__init__()
        self.config = config
        patch = config.input_patch_size
        self.patch_embedding = nn.Conv2d(1, config.embed_dim, patch, stride=patch, bias=config.conv_bias)
        self.layer_norm = nn.LayerNorm(config.embed_dim)
        projected = config.embed_dim != config.encoder_embed_dim
        self.post_extract_proj = nn.Linear(config.embed_dim, config.encoder_embed_dim) if projected else None
        self.dropout_input = nn.Dropout(config.dropout_input)
        self.encoder = BEATsEncoder(config)
        self.predictor = None
        if config.finetuned_model:
            self.predictor_dropout = nn.Dropout(config.predictor_dropout)
            self.predictor = nn.Linear(config.encoder_embed_dim, config.predictor_class)

    def freeze(self) -> "BEATs":
        """Use as a fixed feature extractor: no gradients for any parameter, eval mode. Returns self."""
        self.requires_grad_(False)
        return self.eval()

    def num_positions(self, lengths: Tensor) -> Tensor:
        """Valid output positions (B,) of inputs of ``lengths`` (B,) samples."""
        patch = self.config.input_patch_size
        return num_fbank_frames(lengths) // patch * (self.config.num_mel_bins // patch)

    def compute_fbank(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised Kaldi log-mel fbank of each row over its own samples.

        waveforms (B, S) float 16 kHz in [-1, 1], right-padded; lengths (B,) valid samples, each >= 400. Returns
        fbank (B, T, num_mel_bins) float32, T = frames of the longest row, 0 at padded frames, and frame_mask (B, T)
        bool, True = real frame.
        """
        frames_per_row = num_fbank_frames(lengths)
        total = int(frames_per_row.max())
        span = FRAME_LENGTH + (total - 1) * FRAME_SHIFT
        signal = waveforms[:, :span].float() * WAVEFORM_SCALE
        # Constants rebuilt per call (cheap), not buffers: buffers would follow a model-wide cast to half precision.
        device = signal.device
        window = torch.hann_window(FRAME_LENGTH, periodic=False, dtype=torch.float64, device=device).pow(0.85)
        mel_banks = kaldi_mel_banks(self.config.num_mel_bins).to(device=device, dtype=torch.float32)
        frames = signal.unfold(-1, FRAME_LENGTH, FRAME_SHIFT)  # (B, T, 400)
        frames = frames - frames.mean(dim=-1, keepdim=True)  # DC removal per frame
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # the first sample is its own predecessor
        frames = (frames - PREEMPHASIS * previous) * window.float()  # Povey window: Hann (symmetric) ** 0.85
        power = torch.fft.rfft(frames, n=FFT_SIZE).abs().pow(2)  # (B, T, 257)
        fbank = torch.matmul(power, mel_banks.T).clamp(min=LOG_FLOOR).log()
        fbank = (fbank - self.config.fbank_mean) / (2.0 * self.config.fbank_std)
        frame_mask = torch.arange(total, device=fbank.device).unsqueeze(0) < frames_per_row.unsqueeze(1)
        return fbank.masked_fill(~frame_mask.unsqueeze(-1), 0.0), frame_mask

    def embed_patches(self, fbank: Tensor, frame_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Patch embeddings (B, N, encoder_embed_dim) and mask (B, N) of an fbank (B, T, M) with frame_mask (B, T).

        Position n = t * (M / 16) + f holds the patch of time step t and frequency band f (the official order). A
        time step is valid when its 16 frames are all real.
        """
        patch = self.config.input_patch_size
        weight = self.patch_embedding.weight
        x = self.patch_embedding(fbank.unsqueeze(1).to(weight.dtype))  # (B, E, T / 16, M / 16)
        x = x.flatten(2).transpose(1, 2)
        steps = frame_mask.sum(dim=1) // patch
        step_mask = torch.arange(x.shape[1] // (fbank.shape[2] // patch), device=x.device) < steps.unsqueeze(1)
        mask = step_mask.repeat_interleave(fbank.shape[2] // patch, dim=1)
        x = self.layer_norm(x)
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        return self.dropout_input(x), mask

    def forward(self, waveforms: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Encode a batch of 16 kHz waveforms.

        Args:
            waveforms: (B, S) float, amplitude in [-1, 1], right-padded (the padding values are never read).
            lengths: (B,) valid samples per row; None = all S. Each must be >= ``config.min_samples`` (2800 = 16
                fbank frames = 0.175 s).

        Returns:
            features (B, N, encoder_embed_dim), zero at padded positions, and mask (B, N) bool, True = valid;
            N = 8 * (longest row's fbank frames // 16) with the default front end.
        """
        if waveforms.dim() != 2:
            raise ValueError(f"waveforms must be (B, S), got shape {tuple(waveforms.shape)}")
        batch, samples = waveforms.shape
        lengths = torch.full((batch,), samples) if lengths is None else torch.as_tensor(lengths)
        lengths = lengths.to(device=waveforms.device, dtype=torch.long)
        if lengths.shape != (batch,):
            raise ValueError(f"lengths must be ({batch},), got shape {tuple(lengths.shape)}")
        if bool((lengths > samples).any()):
            raise ValueError(f"lengths exceed the {samples} samples of the batch: {lengths.tolist()}")
        too_short = (lengths < self.config.min_samples).nonzero().flatten().tolist()
        if too_short:
            raise ValueError(
                f"BEATs needs at least {self.config.input_patch_size} fbank frames ({self.config.min_samples} samples, "
                f"{self.config.min_samples / SAMPLE_RATE:.3f} s at 16 kHz); rows {too_short} have "
                f"{[int(lengths[i]) for i in too_short]} samples"
            )
        fbank, frame_mask = self.compute_fbank(waveforms, lengths)
        x, mask = self.embed_patches(fbank, frame_mask)
        x = self.encoder(x, padding_mask=~mask)
        return x.masked_fill(~mask.unsqueeze(-1), 0.0), mask

    def audioset_logits(self, features: Tensor, mask: Tensor) -> Tensor:
        """Clip-level logits (B, predictor_class) of a fine-tuned model: per-position classifier logits averaged
        over valid positions (sigmoid gives the official AudioSet tag probabilities)."""
        if self.predictor is None:
            raise ValueError("this BEATs has no classifier: its config is not a fine-tuned one")
        logits = self.predictor(self.predictor_dropout(features)).masked_fill(~mask.unsqueeze(-1), 0.0)
        return logits.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)


def load_beats_checkpoint(path: str | Path) -> BEATs:
    """Build a :class:`BEATs` from an official checkpoint file and load its weights, in eval mode.

    The file is read with ``torch.load(weights_only=True)``: official checkpoints hold only a ``cfg`` dict of plain
    values and a ``model`` state dict, which the restricted unpickler accepts, so no code in the file is run.
    Any missing or unexpected weight is an error listing them all; so is a shape mismatch.
    """
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path}: holds objects other than tensors and plain data; not a BEATs checkpoint") from error
    if not isinstance(checkpoint, Mapping) or not {"cfg", "model"} <= set(checkpoint):
        found = sorted(checkpoint) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise ValueError(f"{path}: expected a dict with 'cfg' and 'model' entries (official BEATs layout), got {found}")
    model = BEATs(BEATsConfig.from_official_cfg(checkpoint["cfg"]))
    state = checkpoint["model"]
    expected, given = set(model.state_dict()), set(state)
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the cfg; missing keys {missing}, unexpected keys {unexpected}")
    tables = {key: value for key, value in state.items() if key.endswith(".relative_attention_bias.weight")}
    differing = [key for key, value in tables.items() if not torch.equal(value, next(iter(tables.values())))]
    if differing:
        raise ValueError(f"{path}: BEATs shares one relative position table, but these differ: {differing}")
    model.load_state_dict(state, strict=True)
    return model.eval()
