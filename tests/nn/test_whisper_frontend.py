"""Whisper's log-mel features and convolutional front end on the true length, and encoders built from configs."""

import numpy as np
import pytest
import torch

from abhinaya.nn.whisper_frontend import (
    WhisperLogMel,
    build_encoder,
    check_encoder_overrides,
    encoder_config_dict,
    whisper_frontend,
)
from abhinaya.testing.tiny import TINY_WHISPER


def waveforms(lengths, seed=0):
    generator = torch.Generator().manual_seed(seed)
    waves = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        waves[i, :n] = 0.1 * torch.randn(n, generator=generator)
    return waves, torch.tensor(lengths)


def test_whisper_log_mel_matches_feature_extractor():
    from transformers import WhisperFeatureExtractor

    log_mel = WhisperLogMel(80)
    waves, lengths = waveforms([8250], seed=5)
    mel, frames = log_mel(waves, lengths)
    assert frames.tolist() == [8250 // 160]
    reference = WhisperFeatureExtractor(feature_size=80)(waves[0].numpy(), sampling_rate=16000, return_tensors="np")
    expected = reference["input_features"][0, :, : frames[0]]
    assert mel.shape == (1, 80, frames[0])
    np.testing.assert_allclose(mel[0].numpy(), expected, atol=2e-4)


def test_whisper_log_mel_ignores_the_padding():
    log_mel = WhisperLogMel(80)
    # 8180 samples: the last frame's window reaches 20 samples past the end of the utterance.
    waves, lengths = waveforms([8180, 12000], seed=6)
    waves[0, 8180:] = torch.randn(12000 - 8180)
    mel, frames = log_mel(waves, lengths)
    alone, alone_frames = log_mel(waves[:1, :8180], lengths[:1])
    assert frames.tolist() == [51, 75] and alone_frames.tolist() == [51]
    torch.testing.assert_close(mel[0, :, :51], alone[0], rtol=0, atol=1e-6)
    assert torch.all(mel[0, :, 51:] == 0)


def test_front_end_masks_padding_and_matches_an_utterance_alone():
    torch.manual_seed(0)
    encoder = build_encoder("whisper", dict(TINY_WHISPER)).eval()
    log_mel = WhisperLogMel(encoder.config.num_mel_bins)
    waves, lengths = waveforms([5000, 9000], seed=2)
    mel, frames = log_mel(waves, lengths)
    with torch.no_grad():
        x, mask, attention_mask = whisper_frontend(encoder, mel, frames)
        alone, alone_mask, alone_attention = whisper_frontend(encoder, *log_mel(waves[:1, :5000], lengths[:1]))
    # 5000 samples -> 31 mel frames -> 16 encoder frames; 9000 -> 56 -> 28.
    assert x.shape == (2, 28, encoder.config.d_model)
    assert mask.sum(dim=1).tolist() == [16, 28]
    assert attention_mask.shape == (2, 1, 1, 28)
    assert torch.all(attention_mask[0, 0, 0, 16:] < -1e30) and torch.all(attention_mask[:, 0, 0, :16] == 0)
    assert alone_mask.all() and alone_attention is None
    torch.testing.assert_close(x[0, :16], alone[0], rtol=0, atol=1e-6)


def test_encoder_config_round_trips_without_bookkeeping_keys():
    encoder = build_encoder("whisper", {"model_type": "whisper", **TINY_WHISPER})
    config = encoder_config_dict(encoder.config)
    assert "model_type" not in config and "transformers_version" not in config
    rebuilt = build_encoder("whisper", config)
    assert rebuilt.config.d_model == encoder.config.d_model
    assert [k for k, _ in rebuilt.named_parameters()] == [k for k, _ in encoder.named_parameters()]


def test_unknown_encoder_overrides_are_errors():
    check_encoder_overrides("whisper", {"dropout": 0.1})
    with pytest.raises(ValueError, match="not settings"):
        check_encoder_overrides("whisper", {"no_such_setting": 1})
