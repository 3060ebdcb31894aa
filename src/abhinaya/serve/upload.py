"""Uploaded audio: bytes held in memory -> a mono float32 waveform, with the checks of ``abhinaya.audio.load_audio``.

Nothing is written to disk and nothing is opened by name: the bytes are decoded by libsndfile from a ``BytesIO``.
Every refusal is an ``UploadError`` carrying the HTTP status it is answered with and a message that names the
upload (the client's own file name, never a path of the server):

- 400: an empty body, bytes that are not audio, a truncated or damaged file, NaN samples, no samples, too short;
- 413: audio longer than the service's limit;
- 415: a known audio or video container the decoder cannot read (MP4/M4A/AAC, WebM/Matroska, AMR, WMA, ...).

The waveform equals what ``load_audio`` gives for the same file (same decoder, channel mean and resampler), so a
served prediction equals ``abhinaya predict`` of the same file.
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from abhinaya.audio import MIN_SAMPLE_RATE, resample

# Formats libsndfile decodes, as named in the answers.
DECODED_FORMATS = "wav, flac, ogg/vorbis, opus, mp3, aiff, au"


class UploadError(ValueError):
    """An upload that cannot be used: ``status`` is the HTTP status it is answered with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Clip:
    """One decoded upload: ``wave`` mono float32 at ``sample_rate`` Hz (the file's own rate), ``name`` the client's
    file name (for messages only). ``at_rate`` gives the waveform at another rate, resampled once and kept."""

    name: str
    wave: np.ndarray
    sample_rate: int
    _resampled: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.wave.shape[0] / self.sample_rate

    def at_rate(self, rate: int) -> np.ndarray:
        """The waveform at ``rate`` Hz, resampled as ``load_audio`` resamples (soxr, very high quality)."""
        if rate == self.sample_rate:
            return self.wave
        if rate not in self._resampled:
            self._resampled[rate] = np.ascontiguousarray(resample(self.wave, self.sample_rate, rate), dtype=np.float32)
        return self._resampled[rate]


# Containers and codecs that are audio (or video with audio) but that libsndfile does not decode: answered 415.
_UNSUPPORTED_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "MP4/M4A/3GP/MOV (AAC or ALAC)"),
    (0, b"\x1a\x45\xdf\xa3", "WebM/Matroska"),
    (0, b"#!AMR", "AMR"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "ASF/WMA"),
    (0, b"MThd", "MIDI"),
    (0, b"FORM", "IFF (not AIFF)"),
    (0, b"fLaC", "FLAC"),  # only reached when libsndfile refused it: a FLAC variant it does not read
    (0, b"OggS", "Ogg with a codec other than Vorbis, Opus or FLAC"),
    (0, b"RIFF", "RIFF with an audio codec the decoder does not read"),
)
_MEDIA_TYPES = re.compile(r"^(audio|video)/", re.IGNORECASE)
# Declared types of the formats libsndfile decodes: a body declared as one of them that does not decode is not audio
# (400), while one declared as another audio or video type is a format the service does not take (415).
_DECODED_TYPES = {
    "audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "audio/flac", "audio/x-flac", "audio/ogg",
    "audio/vorbis", "audio/opus", "audio/mpeg", "audio/mp3", "audio/x-mp3", "audio/mpeg3", "audio/x-mpeg-3",
    "audio/aiff", "audio/x-aiff", "audio/basic", "audio/x-au", "audio/au",
}


def _undecoded_type(content_type: str | None) -> bool:
    """Whether the client declared an audio or video type of a format libsndfile does not decode."""
    if not content_type:
        return False
    kind = content_type.split(";")[0].strip().lower()
    return bool(_MEDIA_TYPES.match(kind)) and kind not in _DECODED_TYPES


def _unsupported_container(data: bytes) -> str | None:
    for offset, magic, name in _UNSUPPORTED_SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return name
    if len(data) >= 2 and data[0] == 0xFF and (data[1] & 0xF6) == 0xF0:  # ADTS sync word, layer 0: raw AAC
        return "AAC (ADTS)"
    return None


def _wav_truncation(data: bytes) -> str | None:
    """Why a RIFF/WAVE body is shorter than its header says, or None. libsndfile quietly decodes what is there,
    so a cut upload would otherwise be predicted from part of the audio."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    declared = struct.unpack("<I", data[4:8])[0]
    position = 12
    while position + 8 <= len(data):
        chunk, size = data[position : position + 4], struct.unpack("<I", data[position + 4 : position + 8])[0]
        body = position + 8
        if chunk == b"data":
            # 0 and 0xFFFFFFFF are placeholders of streaming writers that never went back to fill in the size
            if size not in (0, 0xFFFFFFFF) and body + size > len(data):
                return f"the header declares {size} bytes of samples but the upload holds {len(data) - body}"
            return None
        position = body + size + (size & 1)
    if declared not in (0, 0xFFFFFFFF) and declared + 8 > len(data):
        return f"the header declares {declared + 8} bytes but the upload holds {len(data)}"
    return None


_PLAIN_READINGS = (
    ("lost sync", "the file is truncated or damaged"),
    ("unexpected end", "the file is truncated"),
    ("psf_fseek", "the file is truncated or damaged"),
    ("unspecified internal error", "the file is damaged"),
    ("malformed", "the file's header is damaged or truncated"),
)


def _reason(err: Exception) -> str:
    """The decoder's message without the in-memory object's name, read in plain words where we can."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    text = re.sub(r"^Error opening <[^>]*>:\s*", "", text)
    text = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the upload", text)
    text = text.removeprefix("Error : ").strip()
    for clue, reading in _PLAIN_READINGS:
        if clue in text.lower():
            return f"{reading} ({text[:160]})"
    return text[:200]


def decode_upload(
    data: bytes,
    name: str = "upload",
    *,
    content_type: str | None = None,
    max_seconds: float | None = None,
    min_seconds: float = 0.0,
) -> Clip:
    """Decode the bytes of one upload (see the module docstring for what is refused, and with which status).
    ``name``: the client's file name, used in messages only. ``max_seconds``: longer audio is refused (413) from
    its header, before it is decoded."""
    label = f"{name!r}"
    if not data:
        raise UploadError(400, f"{label}: the upload is empty (0 bytes)")
    truncated = _wav_truncation(data)
    if truncated is not None:
        raise UploadError(400, f"{label}: the upload is truncated: {truncated}")
    try:
        info = sf.info(io.BytesIO(data))
    except Exception as err:  # libsndfile raises several types for bad input
        reason = _reason(err)
        container = _unsupported_container(data)
        if "not recognised" in reason.lower() or "unsupported" in reason.lower():
            if container is not None:
                raise UploadError(415, f"{label}: {container} is not a format this service decodes; send "
                                       f"{DECODED_FORMATS}") from None
            if _undecoded_type(content_type) and not _looks_like_text(data):
                raise UploadError(415, f"{label}: declared as {content_type}, which this service does not decode; "
                                       f"send {DECODED_FORMATS}") from None
            raise UploadError(400, f"{label}: not audio in a format this service decodes ({DECODED_FORMATS})") from None
        raise UploadError(400, f"{label}: cannot be decoded as audio: {reason}") from None
    rate = int(info.samplerate)
    if rate < MIN_SAMPLE_RATE:
        raise UploadError(400, f"{label}: sample rate {rate} Hz is too low for speech (at least {MIN_SAMPLE_RATE} Hz)")
    if max_seconds is not None and info.frames > 0 and info.frames / rate > max_seconds:
        raise UploadError(413, f"{label}: {info.frames / rate:.1f} s of audio; this service takes at most "
                               f"{max_seconds:g} s per file (--max-duration)")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as err:
        raise UploadError(400, f"{label}: cannot be decoded as audio: {_reason(err)}") from None
    if samples.shape[0] == 0:
        raise UploadError(400, f"{label}: the file holds no audio samples (empty)")
    if not np.isfinite(samples).all():
        raise UploadError(400, f"{label}: contains NaN or infinite samples")
    wave = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    clip = Clip(name, np.ascontiguousarray(wave, dtype=np.float32), int(rate))
    if max_seconds is not None and clip.duration > max_seconds:
        raise UploadError(413, f"{label}: {clip.duration:.1f} s of audio; this service takes at most "
                               f"{max_seconds:g} s per file (--max-duration)")
    if clip.duration < min_seconds:
        raise UploadError(400, f"{label}: too short: {clip.duration:.3f} s, at least {min_seconds:.3f} s needed")
    return clip


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


__all__ = ["DECODED_FORMATS", "Clip", "UploadError", "decode_upload"]
