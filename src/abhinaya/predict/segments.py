"""Long recordings cut into utterances: block-wise reading, voice-activity detection, segmentation.

A recording of any length is read from disk in blocks (``read_blocks``: ``soundfile`` at the file's own rate, mixed
to mono, resampled block by block with soxr's streaming resampler), so memory stays bounded whatever its length.
Two passes over the file:

1. ``find_segments``: a voice-activity detector gives a speech probability per frame of 512 samples at 16 kHz
   (32 ms), its state carried across block edges; a hysteresis tracker turns the probabilities into speech regions
   (``SegmentConfig``: thresholds, minimum speech, minimum silence), pads them, and splits any region longer than
   ``max_segment`` evenly. Only the timestamps are kept.
2. ``cut_segments``: the file is read again at the model's rate and each segment's samples are yielded as soon as
   they are complete; the buffer never holds more than one block plus one segment.

Detectors (``SegmentConfig.vad``):

- ``silero``: Silero VAD (the ``silero-vad`` package, ``pip install 'abhinaya[vad]'``, whose JIT weights it
  carries; CPU, no model hub). ``make_detector`` falls back to ``energy`` with a note where the package is absent.
- ``energy``: no weights. The frame level in dB against an adaptive noise floor (a low percentile of the last
  ``energy_history`` seconds of levels) plus ``energy_margin_db``, and never below ``energy_floor_db``; the
  distance to that threshold is mapped to a probability, so both detectors share the tracker.

Times are seconds from the start of the file; a ``Segment`` is named ``<recording>_<start_ms>_<end_ms>``.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import soundfile as sf
import soxr

from abhinaya.audio import MIN_SAMPLE_RATE, AudioError

VAD_RATE = 16_000
FRAME_SAMPLES = 512  # one Silero VAD window at 16 kHz: 32 ms
VAD_METHODS: tuple[str, ...] = ("silero", "energy")


@dataclass
class SegmentConfig:
    """How recordings are cut into utterances. Durations are seconds.

    - ``vad``: ``silero`` (Silero VAD; the energy detector where the package is absent) or ``energy``.
    - ``max_segment``: no segment is longer; longer speech is split into equal parts.
    - ``min_speech``: speech shorter than this (before padding) is dropped.
    - ``min_silence``: a pause must last this long to end a segment.
    - ``speech_pad``: added on both sides of each segment (halved between segments closer than twice this).
    - ``threshold``: speech probability at which speech starts; it ends below ``threshold - 0.15``.
    - ``block_seconds``: audio read from disk at a time.
    - ``energy_margin_db``, ``energy_floor_db``, ``energy_history``: the energy detector's threshold (dB above the
      noise floor, absolute minimum in dBFS, seconds of levels the floor is taken from).
    """

    vad: str = "silero"
    max_segment: float = 20.0
    min_speech: float = 0.5
    min_silence: float = 0.5
    speech_pad: float = 0.2
    threshold: float = 0.5
    block_seconds: float = 30.0
    energy_margin_db: float = 12.0
    energy_floor_db: float = -55.0
    energy_history: float = 30.0

    def __post_init__(self) -> None:
        if self.vad not in VAD_METHODS:
            raise ValueError(f"vad must be one of {', '.join(VAD_METHODS)}, got {self.vad!r}")
        if not self.max_segment > 0:
            raise ValueError(f"max_segment must be positive, got {self.max_segment}")
        for name in ("min_speech", "min_silence", "speech_pad"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if 2 * self.speech_pad >= self.max_segment:
            raise ValueError(
                f"speech_pad ({self.speech_pad} s) must be under half of max_segment ({self.max_segment} s)"
            )
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if not self.block_seconds > 0:
            raise ValueError(f"block_seconds must be positive, got {self.block_seconds}")
        if not self.energy_history > 0:
            raise ValueError(f"energy_history must be positive, got {self.energy_history}")

    @property
    def neg_threshold(self) -> float:
        return max(self.threshold - 0.15, 0.01)


@dataclass(frozen=True)
class Segment:
    """One utterance of a recording: ``start`` and ``end`` in seconds from its beginning."""

    recording: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def id(self) -> str:
        """``<recording>_<start_ms>_<end_ms>``."""
        return f"{self.recording}_{int(round(self.start * 1000))}_{int(round(self.end * 1000))}"


# ----------------------------------------------------------------------------- reading
def read_blocks(path: str | Path, sample_rate: int, block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Mono float32 blocks of ``path`` at ``sample_rate`` Hz, in order: about ``block_seconds`` each (the streaming
    resampler holds back a few milliseconds; the last block flushes them). Concatenated, they are the whole file.

    At most one block of the file (at its own rate) and one resampled block are held at a time. Raises
    ``AudioError`` naming the file for a missing, undecodable, empty or NaN-holding file, or one whose rate is too
    low for speech; a decoder error midway says where it happened."""
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    try:
        handle = sf.SoundFile(str(path))
    except Exception as err:  # libsndfile raises several types for bad files
        raise AudioError(path, f"cannot be decoded as audio ({_decoder_words(err)})") from None
    with handle:
        rate = int(handle.samplerate)
        if rate < MIN_SAMPLE_RATE:
            raise AudioError(path, f"sample rate {rate} Hz is too low for speech (at least {MIN_SAMPLE_RATE} Hz)")
        frames = max(1, int(round(block_seconds * rate)))
        stream = (
            soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="VHQ") if rate != sample_rate else None
        )
        done = 0
        while True:
            try:
                data = handle.read(frames, dtype="float32", always_2d=True)
            except Exception as err:
                raise AudioError(
                    path, f"cannot be decoded between {done / rate:.1f} and {(done + frames) / rate:.1f} s "
                    f"({_decoder_words(err)})"
                ) from None
            last = data.shape[0] < frames
            if data.shape[0] == 0 and done == 0:
                raise AudioError(path, "contains no audio samples")
            if not np.isfinite(data).all():
                where = done + int(np.argmax(~np.isfinite(data).all(axis=1)))
                raise AudioError(path, f"contains NaN or infinite samples (at {where / rate:.1f} s)")
            done += data.shape[0]
            wave = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
            del data
            if stream is not None:
                wave = stream.resample_chunk(np.ascontiguousarray(wave), last=last)
            if wave.shape[0]:
                yield np.ascontiguousarray(wave, dtype=np.float32)
            if last:
                return


def _decoder_words(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    text = text.removeprefix("Error : ").strip()[:160]
    lowered = text.lower()
    if "lost sync" in lowered or "unexpected end" in lowered:
        return f"the file is truncated or damaged: {text}"
    if "internal error" in lowered or "error in flac decoder" in lowered:
        return f"the file is damaged: {text}"
    if "format not recognised" in lowered:
        return f"not an audio format the decoder knows, or not audio: {text}"
    return text


def frames_of(blocks: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Consecutive ``(n, size)`` frame matrices from ``blocks`` (the tail short of a frame is carried over to the
    next block; the very last one is zero-padded to a whole frame)."""
    carry = np.zeros(0, dtype=np.float32)
    for block in blocks:
        wave = np.concatenate([carry, block]) if carry.size else block
        whole = wave.shape[0] // size * size
        if whole:
            yield wave[:whole].reshape(-1, size)
        carry = wave[whole:].copy()
    if carry.size:
        yield np.pad(carry, (0, size - carry.size)).reshape(1, size)


# ----------------------------------------------------------------------------- detectors
class EnergyDetector:
    """Speech probability per frame from its level (no weights): see the module docstring."""

    name = "energy"

    def __init__(self, config: SegmentConfig | None = None):
        self.config = config or SegmentConfig(vad="energy")
        self._history: deque[np.ndarray] = deque()
        self._kept = 0

    def reset(self) -> None:
        self._history.clear()
        self._kept = 0

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """``(n, FRAME_SAMPLES)`` frames at 16 kHz -> ``(n,)`` speech probabilities."""
        cfg = self.config
        power = np.mean(np.square(frames, dtype=np.float64), axis=1)
        level = 10.0 * np.log10(power + 1e-12)
        self._history.append(level)
        self._kept += level.size
        limit = max(1, int(cfg.energy_history * VAD_RATE / FRAME_SAMPLES))
        while self._kept - self._history[0].size >= limit:
            self._kept -= self._history.popleft().size
        floor = float(np.percentile(np.concatenate(self._history), 10))
        threshold = max(floor + cfg.energy_margin_db, cfg.energy_floor_db)
        return 1.0 / (1.0 + np.exp(-(level - threshold) / 2.0))


_SILERO = None


def silero_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("silero_vad") is not None
    except (ImportError, ValueError):
        return False


def _silero_model():
    """Silero VAD's JIT model from the weights the ``silero-vad`` package carries (loaded once per process)."""
    global _SILERO
    if _SILERO is None:
        import torch

        threads = torch.get_num_threads()
        try:
            from silero_vad import load_silero_vad  # its import sets torch's thread count to 1: put it back
        finally:
            torch.set_num_threads(threads)
        with warnings.catch_warnings():  # the package's own deprecation warnings (importlib path, torch.jit.load)
            warnings.simplefilter("ignore", DeprecationWarning)
            _SILERO = load_silero_vad(onnx=False)
    return _SILERO


class SileroDetector:
    """Silero VAD, one call per 32 ms frame, its recurrent state carried from frame to frame (and so across
    blocks)."""

    name = "silero"

    def __init__(self):
        self.model = _silero_model()
        self.model.reset_states()

    def reset(self) -> None:
        self.model.reset_states()

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import torch

        out = np.empty(frames.shape[0], dtype=np.float64)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one small frame per call: more threads only add synchronisation (5-30x slower)
        try:
            with torch.inference_mode():
                tensor = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
                for i in range(frames.shape[0]):
                    out[i] = float(self.model(tensor[i], VAD_RATE))
        finally:
            torch.set_num_threads(threads)
        return out


def make_detector(config: SegmentConfig, report: Callable[[str], None] | None = None):
    """The detector ``config.vad`` names; ``silero`` without its package gives the energy detector and one note."""
    if config.vad == "silero":
        if not silero_available():
            reason = "silero-vad is not installed (pip install 'abhinaya[vad]')"
        else:
            try:
                return SileroDetector()
            except Exception as err:  # a damaged install: say so, and segment all the same
                reason = f"Silero VAD could not be loaded ({type(err).__name__}: {str(err).strip()[:160]})"
        if report is not None:
            report(f"note: {reason}; segmenting with the energy detector instead")
    return EnergyDetector(config)


# ----------------------------------------------------------------------------- segmentation
class SpeechTracker:
    """Speech regions from per-frame probabilities, frame by frame (hysteresis, as Silero's
    ``get_speech_timestamps``): speech starts at a frame at or above ``threshold`` and ends at the first frame of a
    pause below ``neg_threshold`` lasting ``min_silence``; regions shorter than ``min_speech`` are dropped. Regions
    are ``(start, end)`` in samples at 16 kHz, unpadded."""

    def __init__(self, config: SegmentConfig):
        self.config = config
        self.min_silence = config.min_silence * VAD_RATE
        self.min_speech = config.min_speech * VAD_RATE
        self.frame = 0
        self.start: int | None = None
        self.pause: int | None = None

    def push(self, probs: np.ndarray) -> list[tuple[int, int]]:
        closed = []
        high, low = self.config.threshold, self.config.neg_threshold
        for p in probs:
            here = self.frame * FRAME_SAMPLES
            self.frame += 1
            if p >= high:
                self.pause = None
                if self.start is None:
                    self.start = here
            elif p < low and self.start is not None:
                if self.pause is None:
                    self.pause = here
                if here - self.pause >= self.min_silence:
                    if self.pause - self.start > self.min_speech:
                        closed.append((self.start, self.pause))
                    self.start = self.pause = None
        return closed

    def finish(self, total: int) -> list[tuple[int, int]]:
        """The region still open at the end of a recording of ``total`` samples (16 kHz)."""
        if self.start is None:
            return []
        end = self.pause if self.pause is not None else total
        start, self.start, self.pause = self.start, None, None
        return [(start, end)] if end - start > self.min_speech else []


def pad_and_split(
    regions: Sequence[tuple[int, int]], total: int, recording: str, config: SegmentConfig
) -> list[Segment]:
    """``regions`` (16 kHz samples, sorted, disjoint) padded by ``speech_pad`` without overlapping their
    neighbours or leaving ``[0, total]``, each then split into ``ceil(length / max_segment)`` equal segments."""
    pad = int(round(config.speech_pad * VAD_RATE))
    padded = []
    for i, (start, end) in enumerate(regions):
        before = pad if i == 0 else min(pad, (start - regions[i - 1][1]) // 2)
        after = pad if i == len(regions) - 1 else min(pad, (regions[i + 1][0] - end) // 2)
        padded.append((max(0, start - before), min(total, end + after)))
    longest = int(math.floor(config.max_segment * VAD_RATE))
    segments = []
    for start, end in padded:
        parts = max(1, math.ceil((end - start) / longest))
        edges = [start + round(k * (end - start) / parts) for k in range(parts + 1)]
        segments += [Segment(recording, a / VAD_RATE, b / VAD_RATE) for a, b in zip(edges, edges[1:]) if b > a]
    return segments


@dataclass
class Segmentation:
    """What ``find_segments`` made of one recording: its ``duration`` (seconds) and ``segments``."""

    recording: str
    audio: str | None  # None for a waveform segmented in memory
    duration: float
    segments: list[Segment]
    detector: str

    @property
    def speech_seconds(self) -> float:
        return float(sum(s.duration for s in self.segments))


def find_segments(path: str | Path, recording: str, config: SegmentConfig, detector=None) -> Segmentation:
    """Cut the recording ``path`` into segments (timestamps only; one pass over the file in blocks). ``detector``:
    from ``make_detector`` (built from ``config`` when None). Raises ``AudioError`` naming the file."""
    blocks = read_blocks(path, VAD_RATE, config.block_seconds)
    return _segment_blocks(blocks, recording, str(path), config, detector)


def find_segments_in_wave(wave: np.ndarray, recording: str, config: SegmentConfig, detector=None) -> Segmentation:
    """As ``find_segments``, for a waveform held in memory at the detector's rate (``VAD_RATE``, 16 kHz): what the
    service does with an upload, which it never writes to disk."""
    step = max(1, int(config.block_seconds * VAD_RATE))
    blocks = (wave[start : start + step] for start in range(0, wave.shape[0], step))
    return _segment_blocks(blocks, recording, None, config, detector)


def _segment_blocks(blocks: Iterable[np.ndarray], recording: str, path: str | None, config: SegmentConfig,
                    detector) -> Segmentation:
    detector = detector if detector is not None else make_detector(config)
    detector.reset()
    tracker = SpeechTracker(config)
    regions: list[tuple[int, int]] = []
    total = 0

    def counted(blocks):
        nonlocal total
        for block in blocks:
            total += block.shape[0]
            yield block

    for frames in frames_of(counted(blocks), FRAME_SAMPLES):
        regions += tracker.push(detector(frames))
    regions += tracker.finish(total)
    return Segmentation(recording, path, total / VAD_RATE, pad_and_split(regions, total, recording, config),
                        detector.name)


def cut_segments(
    path: str | Path, segments: Sequence[Segment], sample_rate: int, block_seconds: float = 30.0
) -> Iterator[tuple[Segment, np.ndarray]]:
    """Each of ``segments`` (sorted by start, disjoint) with its float32 samples at ``sample_rate``, read from
    ``path`` in blocks and yielded as soon as it is complete; stops reading after the last segment. A segment
    reaching past the end of the file is cut at it."""
    todo = deque(sorted(segments, key=lambda s: s.start))
    if not todo:
        return
    bounds = {id(s): (int(round(s.start * sample_rate)), int(round(s.end * sample_rate))) for s in todo}
    buffer = np.zeros(0, dtype=np.float32)
    origin = 0  # file position (samples at sample_rate) of buffer[0]
    for block in read_blocks(path, sample_rate, block_seconds):
        first = bounds[id(todo[0])][0]
        end_of_block = origin + buffer.shape[0] + block.shape[0]
        if end_of_block <= first:  # still before the next segment: keep nothing
            origin, buffer = end_of_block, np.zeros(0, dtype=np.float32)
            continue
        buffer = np.concatenate([buffer, block])
        while todo and bounds[id(todo[0])][1] <= origin + buffer.shape[0]:
            segment = todo.popleft()
            start, end = bounds[id(segment)]
            yield segment, buffer[max(0, start - origin): end - origin].copy()
        if not todo:
            return
        keep_from = min(max(0, bounds[id(todo[0])][0] - origin), buffer.shape[0])
        buffer, origin = buffer[keep_from:].copy(), origin + keep_from
    for segment in todo:  # past the end of the file
        start, end = bounds[id(segment)]
        piece = buffer[max(0, start - origin): max(0, end - origin)]
        if piece.shape[0]:
            yield segment, piece.copy()


__all__ = [
    "FRAME_SAMPLES",
    "VAD_METHODS",
    "VAD_RATE",
    "EnergyDetector",
    "Segment",
    "SegmentConfig",
    "Segmentation",
    "SileroDetector",
    "SpeechTracker",
    "cut_segments",
    "find_segments",
    "find_segments_in_wave",
    "frames_of",
    "make_detector",
    "pad_and_split",
    "read_blocks",
    "silero_available",
]
