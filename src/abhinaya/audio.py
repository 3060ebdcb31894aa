"""Audio decoding: any format libsndfile reads (wav, flac, ogg/vorbis, opus, mp3
with libsndfile >= 1.1) to mono float32 at the model's rate, resampled with
the SoX resampler (soxr, "VHQ").

Every failure is an ``AudioError`` whose message starts with the file's path
and says what is wrong, so batch commands can report it and go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au")
DEFAULT_SAMPLE_RATE = 16_000


class AudioError(ValueError):
    """An audio file that cannot be used; ``path`` names it, ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def audio_info(path: str | Path) -> AudioInfo:
    """Header information, without decoding the samples."""
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    try:
        info = sf.info(str(path))
    except Exception as err:  # libsndfile raises several types for bad files
        raise AudioError(path, f"cannot be decoded as audio ({_short(err)})") from None
    return AudioInfo(str(path), int(info.samplerate), int(info.channels), int(info.frames))


# Below this rate a file cannot hold speech; such a rate is a damaged or mislabelled header.
MIN_SAMPLE_RATE = 1000


def load_audio(
    path: str | Path,
    sample_rate: int | None = DEFAULT_SAMPLE_RATE,
    *,
    min_duration: float = 0.0,
    allow_silence: bool = True,
) -> np.ndarray:
    """Decode ``path`` to a mono float32 array at ``sample_rate`` Hz (``None``
    keeps the file's own rate). Channels are averaged.

    Raises ``AudioError`` for a missing, undecodable or empty file, NaN/inf
    samples, audio shorter than ``min_duration`` seconds, or (with
    ``allow_silence=False``) digital silence.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    try:
        samples, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:
        raise AudioError(path, f"cannot be decoded as audio ({_short(err)})") from None
    if samples.shape[0] == 0:
        raise AudioError(path, "contains no audio samples")
    if file_rate < MIN_SAMPLE_RATE:
        # resampling a few samples per second up to 16 kHz would make hours of noise out of a damaged header
        raise AudioError(path, f"sample rate {file_rate} Hz is too low for speech (at least {MIN_SAMPLE_RATE} Hz)")
    if not np.isfinite(samples).all():
        raise AudioError(path, "contains NaN or infinite samples")
    wave = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if sample_rate is not None and file_rate != sample_rate:
        wave = resample(wave, file_rate, sample_rate)
    rate = sample_rate or file_rate
    duration = wave.shape[0] / rate
    if duration < min_duration:
        raise AudioError(path, f"too short: {duration:.3f} s, at least {min_duration:.3f} s needed")
    if not allow_silence and not np.any(wave):
        raise AudioError(path, "is digital silence (all samples are zero)")
    return np.ascontiguousarray(wave, dtype=np.float32)


def resample(wave: np.ndarray, rate_in: float, rate_out: float, quality: str = "VHQ") -> np.ndarray:
    """High-quality resampling of a 1-D float signal (soxr; very high quality unless ``quality`` says otherwise)."""
    if rate_in == rate_out:
        return wave.astype(np.float32, copy=False)
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
    return soxr.resample(wave.astype(np.float32, copy=False), rate_in, rate_out, quality=quality).astype(np.float32)


def find_audio_files(folder: str | Path) -> list[Path]:
    """Audio files below ``folder`` (recursive, by extension), sorted."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


# What the codec library's messages mean, in words a user can act on (the library's own text follows in brackets).
_PLAIN_READINGS = (
    ("lost sync", "the file is truncated or damaged"),
    ("format not recognised", "not an audio format the decoder knows (wav, flac, ogg, mp3, ...), or not audio"),
    ("unexpected end", "the file is truncated"),
    ("unspecified internal error", "the file is damaged"),
)


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    text = text.removeprefix("Error : ").strip()
    for clue, reading in _PLAIN_READINGS:
        if clue in text.lower():
            return f"{reading}: {text[:160]}"
    return text[:200]
