"""Speech encoders built from transformers configs, and Whisper's encoder front end run on the true length.

Whisper is trained on 30 s windows; here its log-mel features (:class:`WhisperLogMel`) and its convolutional front end
(:func:`whisper_frontend`) cover only the frames of the longest utterance in the batch, with masks over the padding,
so an utterance gives the same encoder output alone or next to a longer one. Shared by the SSL classifier (S1) and
the speech LLM (S2).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from abhinaya.nn.pooling import lengths_to_mask

__all__ = [
    "CONFIG_HOUSEKEEPING_KEYS",
    "WHISPER_TYPES",
    "WhisperLogMel",
    "build_encoder",
    "check_encoder_overrides",
    "encoder_config_dict",
    "whisper_frontend",
]

WHISPER_TYPES = ("whisper",)

# Bookkeeping keys of a transformers config that do not describe the architecture.
CONFIG_HOUSEKEEPING_KEYS = (
    "model_type",
    "transformers_version",
    "architectures",
    "_name_or_path",
    "name_or_path",
    "dtype",
    "torch_dtype",
)


def encoder_config_dict(hf_config) -> dict[str, Any]:
    """The architecture-defining entries of a transformers config, as plain data."""
    values = hf_config.to_diff_dict()
    return {k: v for k, v in values.items() if k not in CONFIG_HOUSEKEEPING_KEYS}


def build_encoder(model_type: str, encoder_config: dict[str, Any]) -> nn.Module:
    """A random-weight encoder: ``WhisperEncoder`` for Whisper, the transformers base model otherwise."""
    from transformers import AutoConfig, AutoModel
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    kwargs = {k: v for k, v in encoder_config.items() if k not in CONFIG_HOUSEKEEPING_KEYS}
    hf_config = AutoConfig.for_model(model_type, **kwargs)
    if model_type in WHISPER_TYPES:
        return WhisperEncoder(hf_config)
    if getattr(hf_config, "add_adapter", False):
        raise ValueError("encoders with add_adapter=True change the frame rate after the layers; not supported")
    return AutoModel.from_config(hf_config)


def check_encoder_overrides(model_type: str, overrides: dict[str, Any]) -> None:
    """Reject override names that the encoder's transformers config does not have (they would be ignored)."""
    from transformers import AutoConfig

    if not isinstance(overrides, dict):
        raise ValueError(f"encoder_overrides must be a mapping of config settings, got {overrides!r}")
    known = AutoConfig.for_model(model_type).to_dict()
    unknown = sorted(k for k in overrides if k not in known or k in CONFIG_HOUSEKEEPING_KEYS)
    if unknown:
        raise ValueError(f"encoder_overrides: {unknown} are not settings of a {model_type} config")


class WhisperLogMel(nn.Module):
    """Whisper's log-mel spectrogram of each utterance over its own samples (no padding to 30 s).

    25 ms Hann window (n_fft 400), 10 ms hop (160), power spectrum, Slaney mel filters up to 8 kHz, log10 with a
    floor of 1e-10, clamped to (utterance max - 8), then (x + 4) / 4. An utterance of n samples gives n // 160 frames
    (at least one): the first n // 160 frames of transformers' ``WhisperFeatureExtractor``, which zero-pads to 30 s;
    the only difference is that the clamp reference is the maximum over these frames rather than over all 3000.

    Input waveforms (B, S) float at 16 kHz and lengths (B,) in samples; output mel (B, n_mels, F) with zeros beyond
    each utterance's frames, and frame counts (B,).
    """

    def __init__(self, n_mels: int = 80, sample_rate: int = 16000, n_fft: int = 400, hop_length: int = 160):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        self.n_mels = n_mels
        self.n_fft = n_fft
        self.hop_length = hop_length
        filters = mel_filter_bank(
            num_frequency_bins=1 + n_fft // 2,
            num_mel_filters=n_mels,
            min_frequency=0.0,
            max_frequency=8000.0,
            sampling_rate=sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        filters = torch.as_tensor(filters, dtype=torch.float32).T.contiguous()
        self.register_buffer("mel_filters", filters, persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Mel frames (B,) of utterances of ``lengths`` samples."""
        return torch.div(lengths, self.hop_length, rounding_mode="floor").clamp(min=1)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = self.num_frames(lengths)
        mel = waveforms.new_zeros((waveforms.shape[0], self.n_mels, int(frames.max())), dtype=torch.float32)
        filters = self.mel_filters.float()
        window = self.window.float()
        for i in range(waveforms.shape[0]):
            n, f = int(lengths[i]), int(frames[i])
            # Zero after the utterance, as in Whisper's padding to 30 s, so the last frames match its features.
            wave = F.pad(waveforms[i, :n].float(), (0, self.n_fft // 2))
            spec = torch.stft(wave, self.n_fft, self.hop_length, window=window, center=True, return_complex=True)
            power = spec[:, :f].abs() ** 2
            log_spec = (filters @ power).clamp(min=1e-10).log10()
            log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
            mel[i, :, :f] = (log_spec + 4.0) / 4.0
        return mel, frames


def whisper_frontend(
    encoder: nn.Module, mel: torch.Tensor, frames: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Whisper's convolutional front end and positional embeddings on log-mel features of their true length.

    Args:
        encoder: a transformers ``WhisperEncoder``.
        mel: (B, n_mels, F) log-mel features, zero beyond each utterance's frames.
        frames: (B,) valid mel frames per utterance.

    Returns:
        the input of the first transformer layer (B, T, D) with T = ceil(F / 2), the frame mask (B, T) (True = valid)
        and the additive attention mask (B, 1, 1, T) for the encoder layers, or None when no frame is padded.
    """
    dtype = encoder.conv1.weight.dtype
    mel_mask = lengths_to_mask(frames, mel.shape[-1]).unsqueeze(1)
    # Zero the padding before each convolution: a frame next to the end of an utterance then sees the same zeros it
    # sees alone in its batch.
    x = mel.to(dtype) * mel_mask
    x = F.gelu(encoder.conv1(x)) * mel_mask
    x = F.gelu(encoder.conv2(x)).transpose(1, 2)
    x = x + encoder.embed_positions.weight[: x.shape[1]]
    out_frames = torch.div(frames - 1, 2, rounding_mode="floor") + 1
    mask = lengths_to_mask(out_frames, x.shape[1])
    attention_mask = None
    if not bool(mask.all()):
        attention_mask = torch.zeros(mask.shape, dtype=x.dtype, device=x.device)
        attention_mask = attention_mask.masked_fill(~mask, torch.finfo(x.dtype).min)[:, None, None, :]
    return x, mask, attention_mask
