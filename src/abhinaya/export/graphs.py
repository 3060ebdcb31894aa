"""Export-friendly forms of a trained S1 model (:class:`~abhinaya.models.ssl_classifier.SSLClassifier`).

They share the trained model's modules and weights and compute what it computes, written so that one traced graph
holds for every batch size and every length:

- :class:`WhisperLogMelGraph`: :class:`~abhinaya.nn.whisper_frontend.WhisperLogMel` for a whole padded batch at once.
  The short-time Fourier transform is a strided convolution with the windowed DFT basis (no complex tensors), the
  per-utterance clamp reference is a masked maximum, and the number of frames follows from the waveform width, not
  from the lengths' values: ``S // 160 + 1`` frames (at most 3000), one more than the longest utterance of an unpadded
  batch needs. Frames beyond an utterance's own ``max(n // 160, 1)`` are zero and masked, as any padding.
- :class:`WhisperS1Graph`: waveforms ``(B, S)`` float32 and lengths ``(B,)`` int64 -> logits ``(B, C)`` and the pooled
  vector ``(B, P)``; the log-mel front end, Whisper's convolutions, the transformer layers that are used, the layer
  mix, pooling and head. The encoder always gets an additive attention mask (the PyTorch model skips it when no frame
  is padded; adding zeros changes nothing).
- :class:`Wav2Vec2S1Graph`: the same interface for the WavLM / wav2vec2 / HuBERT encoders, which are traceable as
  they are.
- :class:`HeadGraph`: the head's ``classify`` part, pooled vector ``(B, P)`` -> logits ``(B, C)``, for per-speaker
  normalisation done outside the main graph (``classify(embedding - shift)``).

Utterances over Whisper's 30 s window are cut to their first 30 s inside the graph (``long_input: crop``); a model
trained with ``long_input: error`` is held to that by the runtime wrapper (``onnx_model.py``), before the graph runs.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from abhinaya.models.ssl_classifier import SSLClassifier
from abhinaya.nn.head import PooledClassifierHead
from abhinaya.nn.standardize import RunningStandardize

__all__ = ["HeadGraph", "Wav2Vec2S1Graph", "WhisperLogMelGraph", "WhisperS1Graph", "s1_graph"]

# Lowest value of a masked log10 power; real values are >= -10 (the 1e-10 floor).
_MASKED_LOG = -1.0e4


class WhisperLogMelGraph(nn.Module):
    """Batched, traceable :class:`~abhinaya.nn.whisper_frontend.WhisperLogMel`.

    Input waveforms (B, S) float32 (zero-padded on the right) and lengths (B,) in samples (at most S); output mel
    (B, n_mels, F) with F = min(S // hop + 1, max_frames), zero beyond each utterance's frames, and the frame counts
    (B,) = max(lengths // hop, 1) (lengths cut to ``max_frames * hop`` samples first).
    """

    def __init__(self, log_mel: nn.Module, max_frames: int):
        super().__init__()
        self.n_fft = int(log_mel.n_fft)
        self.hop_length = int(log_mel.hop_length)
        self.n_mels = int(log_mel.n_mels)
        self.max_frames = int(max_frames)
        n_bins = self.n_fft // 2 + 1
        n = torch.arange(self.n_fft, dtype=torch.float64)
        k = torch.arange(n_bins, dtype=torch.float64)
        angle = 2.0 * math.pi * k[:, None] * n[None, :] / self.n_fft
        window = log_mel.window.double()
        # Real and imaginary parts of the one-sided DFT of each windowed frame, as one convolution.
        basis = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window], dim=0)
        self.register_buffer("dft_basis", basis.float().unsqueeze(1), persistent=False)  # (2 * n_bins, 1, n_fft)
        self.register_buffer("mel_filters", log_mel.mel_filters.float().clone(), persistent=False)  # (n_mels, n_bins)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        max_samples = self.max_frames * self.hop_length
        waveforms = waveforms[:, :max_samples].float()
        lengths = lengths.clamp(max=max_samples)
        positions = torch.arange(waveforms.shape[1], device=waveforms.device)
        x = waveforms * (positions.unsqueeze(0) < lengths.unsqueeze(1)).to(waveforms.dtype)
        # As WhisperLogMel: zeros after the utterance, then torch.stft's centring (reflection, n_fft // 2 each
        # side). The frames kept never reach past 40 samples into the zeros, so the right-hand reflection is left
        # out and the convolution gives S // hop + 1 frames.
        half = self.n_fft // 2
        x = F.pad(x, (0, half))
        x = F.pad(x.unsqueeze(1), (half, 0), mode="reflect")
        spec = F.conv1d(x, self.dft_basis, stride=self.hop_length)  # (B, 2 * n_bins, F)
        spec = spec[:, :, : self.max_frames]
        n_bins = self.dft_basis.shape[0] // 2
        power = spec[:, :n_bins] ** 2 + spec[:, n_bins:] ** 2
        log_spec = torch.matmul(self.mel_filters, power).clamp(min=1e-10).log10()  # (B, n_mels, F)
        frames = torch.div(lengths, self.hop_length, rounding_mode="floor").clamp(min=1)
        frame_positions = torch.arange(log_spec.shape[-1], device=log_spec.device)
        valid = (frame_positions.unsqueeze(0) < frames.unsqueeze(1)).unsqueeze(1)  # (B, 1, F)
        peak = log_spec.masked_fill(~valid, _MASKED_LOG).amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        mel = (log_spec + 4.0) / 4.0 * valid.to(log_spec.dtype)
        return mel, frames


class FrozenStandardize(nn.Module):
    """:class:`~abhinaya.nn.standardize.RunningStandardize` at inference with its statistics folded in:
    ``(x - mean) * scale + bias``, the same arithmetic without the quantile floor computed on every call."""

    def __init__(self, norm: RunningStandardize):
        super().__init__()
        var = norm.running_var.detach().float()
        if norm.floor_quantile is not None:
            var = var.clamp(min=float(torch.quantile(var, norm.floor_quantile)))
        scale = torch.rsqrt(var + norm.eps) * norm.weight.detach().float()
        self.register_buffer("mean", norm.running_mean.detach().float().clone())
        self.register_buffer("scale", scale)
        self.register_buffer("bias", norm.bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() - self.mean) * self.scale + self.bias).to(x.dtype)


def inference_head(head: PooledClassifierHead) -> PooledClassifierHead:
    """A copy of ``head`` in eval mode whose running standardisation (if any) is a fixed affine map."""
    frozen = copy.deepcopy(head).eval()
    if isinstance(frozen.norm, RunningStandardize):
        frozen.norm = FrozenStandardize(frozen.norm)
    return frozen


def _lengths_mask(lengths: torch.Tensor, width: torch.Tensor | int, device) -> torch.Tensor:
    positions = torch.arange(width, device=device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


class WhisperS1Graph(nn.Module):
    """A Whisper-encoder S1 model from raw audio: waveforms (B, S) float32 at 16 kHz, zero-padded, and lengths (B,)
    int64 in samples -> (logits (B, C), pooled vector (B, P) before the head's norm)."""

    def __init__(self, model: SSLClassifier):
        super().__init__()
        if not model.is_whisper:
            raise ValueError(f"WhisperS1Graph needs a Whisper encoder, got {model.encoder_type}")
        self.model = model
        self.head = inference_head(model.head)
        self.log_mel = WhisperLogMelGraph(model.log_mel, model.max_mel_frames)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        model = self.model
        enc = model.encoder
        mel, frames = self.log_mel(waveforms, lengths)
        # whisper_frontend, with the attention mask always present.
        mel_mask = _lengths_mask(frames, mel.shape[-1], mel.device).unsqueeze(1)
        x = mel.to(enc.conv1.weight.dtype) * mel_mask
        x = F.gelu(enc.conv1(x)) * mel_mask
        x = F.gelu(enc.conv2(x)).transpose(1, 2)
        x = x + enc.embed_positions.weight[: x.shape[1]]
        out_frames = torch.div(frames - 1, 2, rounding_mode="floor") + 1
        mask = _lengths_mask(out_frames, x.shape[1], x.device)
        attention_mask = torch.zeros(mask.shape, dtype=x.dtype, device=x.device)
        attention_mask = attention_mask.masked_fill(~mask, torch.finfo(x.dtype).min)[:, None, None, :]

        layers = model._transformer_layers()
        keep = set(model.layer_indices)
        states: dict[int, torch.Tensor] = {}
        if 0 in keep:
            states[0] = x
        for i, layer in enumerate(layers[: max(model.layer_indices)]):
            x = layer(x, attention_mask)
            if isinstance(x, tuple):
                x = x[0]
            if i + 1 == model.num_layers:
                x = enc.layer_norm(x)
            if i + 1 in keep:
                states[i + 1] = x
        pooled = self.head.embed(model.mix_layers(states), mask)
        return self.head.classify(pooled), pooled


class Wav2Vec2S1Graph(nn.Module):
    """A WavLM / wav2vec2 / HuBERT S1 model from raw audio, with the interface of :class:`WhisperS1Graph`."""

    def __init__(self, model: SSLClassifier):
        super().__init__()
        if model.is_whisper:
            raise ValueError("Wav2Vec2S1Graph takes a wav2vec2-family encoder; use WhisperS1Graph for Whisper")
        self.model = model
        self.head = inference_head(model.head)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states, mask = self.model._wav2vec2_hidden_states(waveforms.float(), lengths)
        pooled = self.head.embed(self.model.mix_layers(states), mask)
        return self.head.classify(pooled), pooled


class HeadGraph(nn.Module):
    """The head's classify part: pooled vectors (B, P) -> logits (B, C)."""

    def __init__(self, model: SSLClassifier):
        super().__init__()
        self.head = inference_head(model.head)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head.classify(embedding)


def s1_graph(model: SSLClassifier) -> nn.Module:
    """The export form of an S1 model: :class:`WhisperS1Graph` or :class:`Wav2Vec2S1Graph`."""
    return WhisperS1Graph(model) if model.is_whisper else Wav2Vec2S1Graph(model)
