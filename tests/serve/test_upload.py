"""Uploaded bytes -> waveform, in memory: the same samples as ``load_audio`` of the file, and every kind of bad
upload refused with its HTTP status and a message naming the client's file name only."""

import io
import struct

import numpy as np
import pytest
import soundfile as sf

from abhinaya.audio import load_audio
from abhinaya.serve.multipart import FormError, parse_form
from abhinaya.serve.upload import UploadError, decode_upload


def encoded(seconds=1.0, rate=16000, fmt="WAV", subtype="PCM_16", channels=1, seed=0):
    rng = np.random.default_rng(seed)
    wave = (0.2 * rng.standard_normal((int(seconds * rate), channels))).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.mark.parametrize(("fmt", "rate", "channels"), [("WAV", 16000, 1), ("FLAC", 44100, 2), ("OGG", 22050, 1)])
def test_the_waveform_is_what_load_audio_gives_for_the_file(tmp_path, fmt, rate, channels):
    data = encoded(1.3, rate, fmt, "VORBIS" if fmt == "OGG" else "PCM_16", channels)
    path = tmp_path / f"a.{fmt.lower()}"
    path.write_bytes(data)
    clip = decode_upload(data, "a")
    np.testing.assert_array_equal(clip.at_rate(16000), load_audio(path, 16000))
    assert clip.duration == pytest.approx(1.3, abs=1e-3)


def status_of(data, **kwargs):
    with pytest.raises(UploadError) as caught:
        decode_upload(data, "client.wav", **kwargs)
    assert caught.value.message.startswith("'client.wav': ")
    return caught.value.status, caught.value.message


def test_bad_uploads_get_their_status_and_reason():
    wav = encoded()
    assert status_of(b"") == (400, "'client.wav': the upload is empty (0 bytes)")
    status, message = status_of(b"just some text, not audio at all")
    assert status == 400 and "not audio" in message
    status, message = status_of(wav[: len(wav) // 2])
    assert status == 400 and "truncated" in message
    status, message = status_of(wav[:44])  # the header alone
    assert status == 400 and "truncated" in message
    flac = encoded(fmt="FLAC", subtype="PCM_16")
    status, message = status_of(flac[: len(flac) // 2])
    assert status == 400 and ("truncated" in message or "damaged" in message)
    nan = io.BytesIO()
    sf.write(nan, np.full(1600, np.nan, dtype=np.float32), 16000, format="WAV", subtype="FLOAT")
    assert status_of(nan.getvalue())[0] == 400 and "NaN" in status_of(nan.getvalue())[1]
    empty = io.BytesIO()
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000, format="WAV", subtype="PCM_16")
    assert "no audio samples" in status_of(empty.getvalue())[1]
    assert "too short" in status_of(encoded(0.05), min_seconds=0.1)[1]
    status, message = status_of(encoded(3.0), max_seconds=2.0)
    assert status == 413 and "3.0 s" in message and "--max-duration" in message


@pytest.mark.parametrize("head", [
    b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00isomM4A ",  # MP4 / M4A
    b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01",  # WebM / Matroska
    b"#!AMR\n",
    b"\xff\xf1\x50\x80\x02\x1f\xfc",  # AAC in ADTS frames
])
def test_known_audio_formats_the_decoder_does_not_read_are_unsupported_media(head):
    status, message = status_of(head + bytes(range(256)) * 4)
    assert status == 415 and "send wav, flac" in message


def test_no_message_names_the_in_memory_object():
    _, message = status_of(b"RIFF\x04\x00\x00\x00WAVEfmt ")
    assert "BytesIO" not in message and "0x" not in message


def test_wav_with_a_streaming_placeholder_size_is_not_called_truncated():
    wav = bytearray(encoded(0.5))
    data_at = wav.index(b"data")
    wav[data_at + 4 : data_at + 8] = struct.pack("<I", 0xFFFFFFFF)
    wav[4:8] = struct.pack("<I", 0xFFFFFFFF)
    try:
        decode_upload(bytes(wav), "stream.wav")
    except UploadError as err:  # libsndfile may still refuse it, but not as truncated
        assert "truncated" not in err.message


def form(*parts, boundary="BOUNDARY"):
    body = b""
    for header, value in parts:
        body += f"--{boundary}\r\nContent-Disposition: form-data; {header}\r\n\r\n".encode() + value + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def test_multipart_bodies_are_parsed_in_memory():
    body = form(('name="file"; filename="a.wav"', b"RIFF..."), ('name="speaker"', b"spk 1"))
    parts = parse_form("multipart/form-data; boundary=BOUNDARY", body)
    assert [(p.name, p.filename, p.data) for p in parts] == [("file", "a.wav", b"RIFF..."), ("speaker", None, b"spk 1")]
    with pytest.raises(FormError) as caught:
        parse_form("multipart/form-data; boundary=BOUNDARY", body[:-20])
    assert caught.value.status == 400 and "truncated" in caught.value.message
    with pytest.raises(FormError) as caught:
        parse_form("application/json", b"{}")
    assert caught.value.status == 415


def test_the_declared_type_decides_between_not_audio_and_unsupported():
    noise = bytes(range(256)) * 8  # no known signature
    assert status_of(noise, content_type="audio/wav")[0] == 400  # a decoded format: these bytes are not audio
    assert status_of(noise, content_type="audio/x-wav; charset=binary")[0] == 400
    assert status_of(noise, content_type="audio/amr-wb")[0] == 415
    assert status_of(noise, content_type="video/quicktime")[0] == 415
    assert status_of(b"plain words", content_type="audio/aac")[0] == 400  # text is not audio, whatever it claims
