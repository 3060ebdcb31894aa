import numpy as np
import pytest
import soundfile as sf

from abhinaya.audio import (
    AudioError,
    audio_info,
    find_audio_files,
    load_audio,
    resample,
)


def _tone(rate, seconds=0.5, channels=1, freq=440.0):
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


@pytest.mark.parametrize("ext,fmt", [(".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG")])
def test_formats_load_to_mono_float32_at_target_rate(tmp_path, ext, fmt):
    path = tmp_path / f"x{ext}"
    sf.write(path, _tone(22050, channels=2), 22050, format=fmt)
    wave = load_audio(path, 16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 8000) <= 2
    assert 0.3 < np.abs(wave).max() < 0.6


def test_mp3_when_supported(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("libsndfile without MP3 support")
    path = tmp_path / "x.mp3"
    sf.write(path, _tone(16000), 16000, format="MP3")
    assert abs(len(load_audio(path, 16000)) - 8000) < 2000


def test_resampler_keeps_a_tone():
    wave = _tone(48000, seconds=1.0, freq=1000.0)
    out = resample(wave, 48000, 16000)
    assert len(out) == 16000
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) - 1000) <= 1  # 1 Hz bins
    assert resample(wave, 48000, 48000) is not None


def test_stereo_channels_are_averaged(tmp_path):
    path = tmp_path / "st.wav"
    stereo = np.stack([np.full(1600, 0.5), np.full(1600, -0.1)], axis=1).astype(np.float32)
    sf.write(path, stereo, 16000, subtype="FLOAT")
    assert np.allclose(load_audio(path, None), 0.2, atol=1e-6)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="missing.wav: file not found"):
        load_audio(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav: file is empty"):
        load_audio(empty)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match="garbage.wav: cannot be decoded"):
        load_audio(garbage)
    with pytest.raises(AudioError, match="cannot be decoded"):
        audio_info(garbage)
    nan = tmp_path / "nan.wav"
    data = _tone(16000)
    data[10] = np.nan
    sf.write(nan, data, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: contains NaN"):
        load_audio(nan)
    short = tmp_path / "short.wav"
    sf.write(short, _tone(16000, seconds=0.01), 16000)
    with pytest.raises(AudioError, match="short.wav: too short"):
        load_audio(short, min_duration=0.1)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(1600, dtype=np.float32), 16000)
    assert load_audio(silent).shape == (1600,)
    with pytest.raises(AudioError, match="silent.wav: is digital silence"):
        load_audio(silent, allow_silence=False)
    noframes = tmp_path / "noframes.wav"
    sf.write(noframes, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="noframes.wav"):
        load_audio(noframes)
    with pytest.raises(AudioError, match="is a folder"):
        load_audio(tmp_path)


def test_audio_info_and_find(tmp_path):
    sf.write(tmp_path / "a.flac", _tone(16000, seconds=2.0), 16000)
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "sub" / "b.WAV", _tone(8000), 8000)
    (tmp_path / "notes.txt").write_text("x")
    info = audio_info(tmp_path / "a.flac")
    assert info.sample_rate == 16000 and info.channels == 1 and info.duration == pytest.approx(2.0)
    assert [p.name for p in find_audio_files(tmp_path)] == ["a.flac", "b.WAV"]


def test_a_truncated_flac_is_called_truncated(tmp_path):
    import numpy as np
    import pytest
    import soundfile as sf

    from abhinaya.audio import AudioError, load_audio

    whole = tmp_path / "whole.flac"
    sf.write(whole, 0.1 * np.sin(np.arange(48000) / 5.0), 16000)
    data = whole.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match=r"cut.flac: cannot be decoded as audio \(the file is truncated"):
        load_audio(cut, 16000)
