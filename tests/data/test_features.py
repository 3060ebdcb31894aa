import numpy as np

from abhinaya.data.features import (
    log_mel_spectrogram,
    mel_filterbank,
    utterance_statistics,
)


def test_mel_filterbank_shape_and_coverage():
    fb = mel_filterbank(40, 512, 16000)
    assert fb.shape == (40, 257)
    assert (fb >= 0).all()
    assert (fb.sum(axis=1) > 0).all()  # every filter covers some bins


def test_log_mel_peaks_where_the_tone_is():
    rate = 16000
    t = np.arange(rate) / rate
    low = log_mel_spectrogram(np.sin(2 * np.pi * 300 * t).astype(np.float32), rate, n_mels=40)
    high = log_mel_spectrogram(np.sin(2 * np.pi * 4000 * t).astype(np.float32), rate, n_mels=40)
    assert low.shape == (101, 40)  # 10 ms hop, centred frames
    assert low.mean(axis=0).argmax() < high.mean(axis=0).argmax()


def test_statistics_size_and_short_input():
    assert utterance_statistics(np.random.default_rng(0).normal(size=8000).astype(np.float32), n_mels=32).shape == (4 * 32 + 3,)
    assert np.isfinite(utterance_statistics(np.zeros(100, dtype=np.float32))).all()
