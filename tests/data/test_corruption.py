"""The conditions of real recordings: each corruption does what it says (measured on the output), is seeded, parses
from a spec, augments training and corrupts test audio (``abhinaya predict --corrupt``: tests/predict/test_corrupt.py)."""

import numpy as np
import pytest
from scipy.signal import welch

from abhinaya.data.audio import AudioConfig, AudioDataset
from abhinaya.data.corruption import AugmentStep, apply_steps, parse_corruption, room_impulse_response
from abhinaya.manifest import Utterance

RATE = 16000


def speechlike(seconds=2.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    wave = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 900, 2500, 5000), start=1))
    return (0.1 * wave * (1 + 0.3 * rng.standard_normal(t.shape).clip(-1, 1))).astype(np.float32)


def power(x):
    return float(np.mean(np.asarray(x, dtype=np.float64) ** 2))


@pytest.mark.parametrize("snr", [20.0, 10.0, 0.0])
def test_noise_is_added_at_the_asked_snr(snr):
    clean = speechlike()
    noisy = apply_steps(clean, RATE, parse_corruption(f"noise:snr={snr:g}"), np.random.default_rng(1))
    measured = 10 * np.log10(power(clean) / power(noisy - clean))
    assert abs(measured - snr) < 0.5


def test_pink_noise_has_more_low_than_high_energy():
    clean = np.zeros(4 * RATE, dtype=np.float32) + 1e-3
    noisy = apply_steps(clean, RATE, parse_corruption("noise:snr=0,colour=-3"), np.random.default_rng(0))
    freqs, psd = welch(noisy - clean, RATE, nperseg=2048)
    assert psd[(freqs > 100) & (freqs < 400)].mean() > 10 * psd[(freqs > 3000) & (freqs < 6000)].mean()


@pytest.mark.parametrize("rt60", [0.3, 0.6, 1.0])
def test_the_room_impulse_response_decays_by_60_db_in_rt60(rt60):
    rir = room_impulse_response(rt60, 0.0, RATE, np.random.default_rng(0))
    tail = rir[int(0.002 * RATE):] ** 2
    schroeder = np.cumsum(tail[::-1])[::-1]  # energy remaining after each instant
    decay_db = 10 * np.log10(schroeder / schroeder[0])
    t5, t25 = np.argmax(decay_db < -5), np.argmax(decay_db < -25)
    estimated = 3.0 * (t25 - t5) / RATE  # T20 extrapolated to 60 dB
    assert abs(estimated - rt60) < 0.15 * rt60
    assert abs(10 * np.log10(1.0 / tail.sum())) < 0.01  # DRR 0 dB: tail energy equals the direct path's


def test_reverberation_smears_the_signal_and_keeps_its_level():
    clean = speechlike()
    wet = apply_steps(clean, RATE, parse_corruption("reverb:rt60=0.6"), np.random.default_rng(0))
    assert abs(10 * np.log10(power(wet) / power(clean))) < 0.1
    assert np.corrcoef(clean, wet)[0, 1] < 0.9


@pytest.mark.parametrize("codec", ["gsm", "mulaw", "mp3"])
def test_the_telephone_band_removes_what_is_above_4_khz(codec):
    clean = speechlike()
    phone = apply_steps(clean, RATE, parse_corruption(f"telephone:codec={codec}"), np.random.default_rng(0))
    assert phone.shape == clean.shape and phone.dtype == np.float32
    freqs, before = welch(clean, RATE, nperseg=1024)
    _, after = welch(phone, RATE, nperseg=1024)
    high = (freqs > 4500) & (freqs < 5500)
    assert after[high].sum() < 0.01 * before[high].sum()
    low = (freqs > 700) & (freqs < 1100)
    assert after[low].sum() > 0.1 * before[low].sum()  # speech band kept


@pytest.mark.parametrize("semitones", [2.0, -3.0])
def test_pitch_moves_a_tone_by_its_semitones_and_keeps_the_length(semitones):
    tone = (0.1 * np.sin(2 * np.pi * 200.0 * np.arange(3 * RATE) / RATE)).astype(np.float32)
    shifted = apply_steps(tone, RATE, parse_corruption(f"pitch:semitones={semitones:g}"), np.random.default_rng(0))
    assert shifted.shape == tone.shape
    middle = shifted[RATE // 2: RATE // 2 + 2 * RATE]  # 2 s: bins of 0.5 Hz
    peak = np.argmax(np.abs(np.fft.rfft(middle))) * RATE / len(middle)
    assert abs(peak - 200.0 * 2 ** (semitones / 12)) < 1.5  # 224.5 Hz up 2, 168.2 Hz down 3


def test_steps_are_seeded_and_happen_with_their_probability():
    clean = speechlike(0.5)
    steps = [AugmentStep(kind="noise", p=0.5, snr_db=[0, 20]), AugmentStep(kind="reverb", p=0.5)]
    a = apply_steps(clean, RATE, steps, np.random.default_rng(7))
    b = apply_steps(clean, RATE, steps, np.random.default_rng(7))
    assert np.array_equal(a, b)
    untouched = sum(np.array_equal(apply_steps(clean, RATE, steps, np.random.default_rng(s)), clean)
                    for s in range(40))
    assert 4 <= untouched <= 18  # (1 - 0.5)^2 of 40 = 10


def test_specs_that_do_not_parse_say_why():
    assert [s.kind for s in parse_corruption("telephone+noise:snr=10")] == ["telephone", "noise"]
    for spec, message in [("echo", "kind must be one of"), ("noise:snr=loud", "is not a number"),
                          ("noise:level=3", "is not one of"), ("reverb:rt60=0", "rt60 must be positive"),
                          ("telephone:codec=opus", "codec must be one of"), ("", "no step")]:
        with pytest.raises(ValueError, match=message):
            parse_corruption(spec)


def test_the_dataset_augments_training_and_corrupts_inference_reproducibly(tmp_path):
    import soundfile as sf

    path = tmp_path / "a.wav"
    sf.write(path, speechlike(1.0), RATE)
    utt = [Utterance(id="a", audio=str(path), label="sad")]
    steps = parse_corruption("reverb:rt60=0.6")
    train = AudioDataset(utt, None, AudioConfig(train_crop_seconds=None, augment=steps), train=True)
    clean_train = AudioDataset(utt, None, AudioConfig(train_crop_seconds=None), train=True)
    assert not np.allclose(train[0]["waveform"].numpy(), clean_train[0]["waveform"].numpy())
    assert np.array_equal(train[0]["waveform"].numpy(), train[0]["waveform"].numpy())
    test = AudioDataset(utt, None, AudioConfig(corrupt=steps), train=False)
    clean = AudioDataset(utt, None, AudioConfig(), train=False)
    assert not np.allclose(test[0]["waveform"].numpy(), clean[0]["waveform"].numpy())
    assert np.array_equal(test[0]["waveform"].numpy(), test[0]["waveform"].numpy())
    untouched_train = AudioDataset(utt, None, AudioConfig(corrupt=steps), train=True)  # corrupt is for inference
    assert np.array_equal(untouched_train[0]["waveform"].numpy(), clean_train[0]["waveform"].numpy())
