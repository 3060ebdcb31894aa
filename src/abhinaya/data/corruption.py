"""The conditions of real recordings, applied to waveforms: additive noise, reverberation, telephone band and codecs,
gain. The same steps augment training (``audio.augment``, on the fly) and corrupt test audio to measure robustness
(``audio.corrupt``, ``abhinaya predict --corrupt``).

Steps (``AugmentStep.kind``):

- ``noise``: coloured noise at an SNR drawn from ``snr_db`` (audiomentations' ``AddColorNoise``; ``colour`` is the
  spectral decay in dB per octave: 0 white, -3 pink, -6 brown, +3 blue), or, with ``folder``, a recording from a
  folder of noise files (``AddBackgroundNoise``);
- ``reverb``: a synthetic room impulse response, a direct path and an exponentially decaying diffuse tail with the
  reverberation time ``rt60`` (seconds; the tail's energy relative to the direct path is ``-drr_db``), convolved with
  the waveform (written here: none of the libraries at hand makes rooms without pyroomacoustics);
- ``telephone``: 8 kHz sampling, the 300-3400 Hz band (pedalboard's high- and low-pass filters) and a narrow-band
  codec, ``codec``: ``gsm`` (pedalboard's GSM full-rate), ``mulaw`` (8-bit mu-law, G.711), ``mp3`` (pedalboard's
  MP3 encoder at its lowest quality) or ``any`` (one of the three, drawn), then back at the model's rate;
- ``gain``: a gain drawn from ``gain_db`` (audiomentations' ``Gain``);
- ``pitch``: the pitch shifted by ``semitones`` drawn from their range, duration kept (audiomentations'
  ``PitchShift``, Signalsmith Stretch). A speaker's pitch is not their emotion; speed changes live in
  ``audio.speed_perturb``.

Each step happens with probability ``p``, its settings drawn uniformly from their ranges, all from the generator the
caller gives (training: seeded by (seed, epoch, utterance); test corruption: by the utterance id), so a run is
reproducible. audiomentations draws from Python's and NumPy's global generators; they are seeded from that
generator for the call and restored afterwards.

At test time a corruption is written as a spec: ``noise:snr=10``, ``noise:snr=0,colour=-3``, ``reverb:rt60=0.6``,
``telephone``, ``telephone:codec=gsm``, ``pitch:semitones=2``, joined with ``+`` (``telephone+noise:snr=10``); ``parse_corruption``.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

AUGMENT_KINDS: tuple[str, ...] = ("noise", "reverb", "telephone", "gain", "pitch")
CODECS: tuple[str, ...] = ("gsm", "mulaw", "mp3", "any")
TELEPHONE_RATE = 8000


@dataclass
class AugmentStep:
    """One corruption (module docstring). Ranges are ``[low, high]``; a spec sets them to one value."""

    kind: str = "noise"
    p: float = 1.0
    snr_db: list[float] = field(default_factory=lambda: [0.0, 20.0])
    colour: list[float] = field(default_factory=lambda: [-6.0, 0.0])
    folder: str | None = None
    rt60: list[float] = field(default_factory=lambda: [0.2, 1.0])
    drr_db: list[float] = field(default_factory=lambda: [0.0, 0.0])
    codec: str = "any"
    gain_db: list[float] = field(default_factory=lambda: [-6.0, 6.0])
    semitones: list[float] = field(default_factory=lambda: [-2.0, 2.0])

    def __post_init__(self) -> None:
        if self.kind not in AUGMENT_KINDS:
            raise ValueError(f"augmentation kind must be one of {', '.join(AUGMENT_KINDS)}, got {self.kind!r}")
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"{self.kind}: p must be in [0, 1], got {self.p}")
        for name in ("snr_db", "colour", "rt60", "drr_db", "gain_db", "semitones"):
            value = [float(v) for v in getattr(self, name)]
            if len(value) != 2 or value[0] > value[1]:
                raise ValueError(f"{self.kind}: {name} must be [low, high], got {getattr(self, name)}")
            setattr(self, name, value)
        if self.rt60[0] <= 0:
            raise ValueError(f"reverb: rt60 must be positive seconds, got {self.rt60}")
        if self.codec not in CODECS:
            raise ValueError(f"telephone: codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        if self.folder is not None and not Path(self.folder).is_dir():
            raise ValueError(f"noise: folder {self.folder} not found")

    def describe(self) -> str:
        """One line for logs: what the step does and how often."""
        detail = {
            "noise": (f"noise files from {self.folder}" if self.folder else f"noise colour {self._range(self.colour)} "
                      "dB/octave") + f" at {self._range(self.snr_db)} dB SNR",
            "reverb": f"reverberation RT60 {self._range(self.rt60)} s, DRR {self._range(self.drr_db)} dB",
            "telephone": f"telephone band, codec {self.codec}",
            "gain": f"gain {self._range(self.gain_db)} dB",
            "pitch": f"pitch {self._range(self.semitones)} semitones",
        }[self.kind]
        return detail + (f" (p={self.p:g})" if self.p < 1 else "")

    @staticmethod
    def _range(values: Sequence[float]) -> str:
        return f"{values[0]:g}" if values[0] == values[1] else f"{values[0]:g} to {values[1]:g}"


_SPEC_KEYS = {"snr": "snr_db", "colour": "colour", "color": "colour", "rt60": "rt60", "drr": "drr_db",
              "gain": "gain_db", "codec": "codec", "folder": "folder", "p": "p", "semitones": "semitones"}


def parse_corruption(spec: str) -> list[AugmentStep]:
    """``"telephone+noise:snr=10"`` -> the steps, each applied always with fixed settings (module docstring)."""
    steps = []
    for part in [p.strip() for p in spec.split("+") if p.strip()]:
        kind, _, options = part.partition(":")
        settings: dict = {"kind": kind.strip(), "p": 1.0}
        if kind.strip() == "noise":
            settings["colour"] = [0.0, 0.0]  # white unless a colour is named
        for option in [o for o in options.split(",") if o.strip()]:
            key, _, value = option.partition("=")
            name = _SPEC_KEYS.get(key.strip())
            if name is None or not value.strip():
                raise ValueError(f"corruption {spec!r}: {option!r} is not one of "
                                 f"{', '.join(k + '=VALUE' for k in sorted(set(_SPEC_KEYS) - {'color'}))}")
            value = value.strip()
            if name in ("codec", "folder"):
                settings[name] = value
            else:
                try:
                    number = float(value)
                except ValueError:
                    raise ValueError(f"corruption {spec!r}: {key}={value!r} is not a number") from None
                settings[name] = number if name == "p" else [number, number]
        try:
            steps.append(AugmentStep(**settings))
        except ValueError as err:
            raise ValueError(f"corruption {spec!r}: {err}") from None
    if not steps:
        raise ValueError(f"corruption {spec!r}: no step (e.g. noise:snr=10, reverb:rt60=0.6, telephone)")
    return steps


@contextlib.contextmanager
def _global_generators(rng: np.random.Generator):
    """Python's and NumPy's global generators seeded from ``rng`` inside the block, restored after it."""
    py_state, np_state = random.getstate(), np.random.get_state()
    seed = int(rng.integers(0, 2**32 - 1))
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def _uniform(rng: np.random.Generator, values: Sequence[float]) -> float:
    return float(values[0]) if values[0] == values[1] else float(rng.uniform(values[0], values[1]))


def room_impulse_response(rt60: float, drr_db: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: a unit direct path, then after 2 ms a diffuse tail of Gaussian noise whose
    energy decays by 60 dB in ``rt60`` seconds, scaled so that the direct-to-reverberant ratio is ``drr_db``."""
    length = int(min(1.5 * rt60, 3.0) * sample_rate)
    delay = int(0.002 * sample_rate)
    t = np.arange(length - delay) / sample_rate
    tail = rng.standard_normal(length - delay) * np.exp(-3.0 * np.log(10.0) * t / rt60)  # amplitude: -60 dB at rt60
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / max(float(np.sum(tail**2)), 1e-12))
    rir = np.zeros(length)
    rir[0] = 1.0
    rir[delay:] += tail
    return rir


def _reverb(wave: np.ndarray, rate: int, step: AugmentStep, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import fftconvolve

    rir = room_impulse_response(_uniform(rng, step.rt60), _uniform(rng, step.drr_db), rate, rng)
    out = fftconvolve(wave.astype(np.float64), rir)[: wave.shape[0]]
    before, after = np.sqrt(np.mean(wave.astype(np.float64) ** 2)), np.sqrt(np.mean(out**2))
    return (out * (before / after if after > 0 else 1.0)).astype(np.float32)


def _mulaw(narrow: np.ndarray) -> np.ndarray:
    """8-bit mu-law (G.711) companding and back."""
    peak = max(float(np.max(np.abs(narrow))), 1e-9)
    x = np.clip(narrow / peak, -1.0, 1.0)
    mu = 255.0
    coded = np.round((np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)) * 127.0) / 127.0
    return (np.sign(coded) * np.expm1(np.abs(coded) * np.log1p(mu)) / mu * peak).astype(np.float32)


def _telephone(wave: np.ndarray, rate: int, step: AugmentStep, rng: np.random.Generator) -> np.ndarray:
    """8 kHz sampling, the 300-3400 Hz band, a codec, back at ``rate``."""
    from abhinaya.audio import resample

    pedalboard = _require("pedalboard")

    codec = step.codec if step.codec != "any" else str(rng.choice(["gsm", "mulaw", "mp3"]))
    narrow = np.ascontiguousarray(resample(wave.astype(np.float32), rate, TELEPHONE_RATE), dtype=np.float32)
    band = pedalboard.Pedalboard([pedalboard.HighpassFilter(300.0), pedalboard.LowpassFilter(3400.0)])
    narrow = band(narrow, TELEPHONE_RATE)
    if codec == "mulaw":
        narrow = _mulaw(narrow)
    else:
        coder = pedalboard.GSMFullRateCompressor() if codec == "gsm" else pedalboard.MP3Compressor(vbr_quality=9.0)
        narrow = pedalboard.Pedalboard([coder])(narrow, TELEPHONE_RATE).reshape(-1)
    back = resample(np.ascontiguousarray(narrow, dtype=np.float32), TELEPHONE_RATE, rate)
    out = np.zeros(wave.shape[0], dtype=np.float32)
    out[: min(len(back), len(out))] = back[: len(out)]
    return out


def _noise(wave: np.ndarray, rate: int, step: AugmentStep, rng: np.random.Generator) -> np.ndarray:
    audiomentations = _require("audiomentations")

    snr = _uniform(rng, step.snr_db)
    if step.folder:
        transform = audiomentations.AddBackgroundNoise(step.folder, min_snr_db=snr, max_snr_db=snr, p=1.0)
    else:
        colour = _uniform(rng, step.colour)
        transform = audiomentations.AddColorNoise(min_snr_db=snr, max_snr_db=snr, min_f_decay=colour,
                                                  max_f_decay=colour, p=1.0)
    with _global_generators(rng):
        return np.asarray(transform(samples=wave.astype(np.float32), sample_rate=rate), dtype=np.float32)


def _gain(wave: np.ndarray, rate: int, step: AugmentStep, rng: np.random.Generator) -> np.ndarray:
    audiomentations = _require("audiomentations")

    gain = _uniform(rng, step.gain_db)
    transform = audiomentations.Gain(min_gain_db=gain, max_gain_db=gain, p=1.0)
    with _global_generators(rng):
        return np.asarray(transform(samples=wave.astype(np.float32), sample_rate=rate), dtype=np.float32)


def _pitch(wave: np.ndarray, rate: int, step: AugmentStep, rng: np.random.Generator) -> np.ndarray:
    audiomentations = _require("audiomentations")

    semitones = _uniform(rng, step.semitones)
    transform = audiomentations.PitchShift(min_semitones=semitones, max_semitones=semitones, p=1.0)
    with _global_generators(rng):
        out = np.asarray(transform(samples=wave.astype(np.float32), sample_rate=rate), dtype=np.float32)
    return out[: wave.shape[0]] if out.shape[0] >= wave.shape[0] else np.pad(out, (0, wave.shape[0] - out.shape[0]))


def _require(module: str):
    """``module``, or an error saying which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"the corruptions need {module}: pip install 'abhinaya[augment]'") from None


_APPLY = {"noise": _noise, "reverb": _reverb, "telephone": _telephone, "gain": _gain, "pitch": _pitch}


def apply_steps(wave: np.ndarray, sample_rate: int, steps: Sequence[AugmentStep],
                rng: np.random.Generator) -> np.ndarray:
    """``wave`` (mono float32) through ``steps`` in order, each with its probability."""
    if not wave.shape[0]:
        return wave
    for step in steps:
        if step.p < 1.0 and rng.random() >= step.p:
            continue
        wave = _APPLY[step.kind](wave, sample_rate, step, rng)
    if not np.isfinite(wave).all():
        raise ValueError("a corruption gave non-finite samples")
    return wave


def describe_steps(steps: Sequence[AugmentStep]) -> str:
    return "; ".join(step.describe() for step in steps) or "none"


__all__ = ["AUGMENT_KINDS", "AugmentStep", "apply_steps", "describe_steps", "parse_corruption",
           "room_impulse_response"]
