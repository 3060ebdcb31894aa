"""Hand-crafted acoustic features for the frozen-feature baselines.

Log-mel spectrograms (torch STFT, HTK-style triangular mel filters) and
utterance-level statistics of them. The learned members compute their own
front ends; these exist so that every learned member can be compared with a
cheap baseline on the same split.
"""

from __future__ import annotations

import functools

import numpy as np
import torch


@functools.lru_cache(maxsize=8)
def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters, ``(n_mels, n_fft // 2 + 1)``, HTK mel scale, area-normalised."""
    fmax = fmax or sample_rate / 2

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / np.maximum(centre - lower, 1e-10)
    falling = (upper - bins[None, :]) / np.maximum(upper - centre, 1e-10)
    filters = np.maximum(0.0, np.minimum(rising, falling))
    filters *= (2.0 / np.maximum(upper - lower, 1e-10))
    return filters.astype(np.float32)


def log_mel_spectrogram(
    wave: np.ndarray,
    sample_rate: int = 16_000,
    n_mels: int = 64,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
) -> np.ndarray:
    """``(frames, n_mels)`` natural-log mel energies of a mono float waveform."""
    win = int(round(sample_rate * win_ms / 1000))
    hop = int(round(sample_rate * hop_ms / 1000))
    n_fft = 1 << (win - 1).bit_length()
    signal = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if signal.numel() < win:
        signal = torch.nn.functional.pad(signal, (0, win - signal.numel()))
    spec = torch.stft(
        signal, n_fft=n_fft, hop_length=hop, win_length=win, window=torch.hann_window(win), center=True, return_complex=True
    )
    power = spec.abs().pow(2).numpy()  # (freq, frames)
    mel = mel_filterbank(n_mels, n_fft, sample_rate) @ power
    return np.log(mel + 1e-6).T.astype(np.float32)


def utterance_statistics(wave: np.ndarray, sample_rate: int = 16_000, n_mels: int = 64) -> np.ndarray:
    """Fixed-size utterance vector: mean and std of log-mels and of their deltas,
    plus mean/std/max of frame energy — ``4 * n_mels + 3`` values."""
    logmel = log_mel_spectrogram(wave, sample_rate, n_mels)
    delta = np.diff(logmel, axis=0) if logmel.shape[0] > 1 else np.zeros_like(logmel)
    energy = logmel.mean(axis=1)
    return np.concatenate(
        [
            logmel.mean(axis=0),
            logmel.std(axis=0),
            delta.mean(axis=0),
            delta.std(axis=0),
            [energy.mean(), energy.std(), energy.max()],
        ]
    ).astype(np.float32)
