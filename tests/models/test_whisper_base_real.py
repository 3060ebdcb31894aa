"""Whisper-base assembled from the pip weight packages: the converted transformers
model must reproduce CTranslate2's encoder output and transcript.

Opt-in (``-m "slow and integration"``); skips when the weight packages,
ctranslate2 or the RAVDESS copy under ../shared/data are absent.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import importlib.metadata
import re
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

RAVDESS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ravdess"
KIDS_FILE = RAVDESS / "Actor_01" / "03-01-01-01-01-01-01.flac"
KIDS_TEXT = "kids are talking by the door"
ENCODER_TOLERANCE = 1e-2


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    pytest.importorskip("transformers")
    pytest.importorskip("ctranslate2")
    from abhinaya.weights.whisper_conversion import (
        WHISPER_BASE_PACKAGES,
        prepare_whisper_base,
    )

    missing = [name for name in WHISPER_BASE_PACKAGES if not _installed(name)]
    if missing:
        pytest.skip(f"weight packages not installed: {', '.join(missing)}")
    cache_dir = tmp_path_factory.mktemp("model-cache")
    folder = prepare_whisper_base(cache_dir, progress=False)
    return folder, cache_dir / "whisper-base-ct2"


@pytest.fixture(scope="module")
def models(prepared):
    import ctranslate2
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    folder, ct2_folder = prepared
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    processor = WhisperProcessor.from_pretrained(folder)
    ct2_model = ctranslate2.models.Whisper(str(ct2_folder), device="cpu", compute_type="float32")
    return model, processor, ct2_model


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def _features(processor, audio: np.ndarray) -> np.ndarray:
    """Log-mel features padded to 30 s (3000 frames), as CTranslate2 requires."""
    return processor.feature_extractor(audio, sampling_rate=16_000, return_tensors="np").input_features.astype(np.float32)


def _ct2_encode(ct2_model, features: np.ndarray) -> np.ndarray:
    import ctranslate2

    return np.array(ct2_model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features))))


def test_encoder_matches_ctranslate2(models):
    import torch

    model, processor, ct2_model = models
    rng = np.random.default_rng(0)
    t = np.arange(16_000 * 4) / 16_000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    features = _features(processor, audio)
    assert features.shape == (1, 80, 3000)
    expected = _ct2_encode(ct2_model, features)
    with torch.no_grad():
        actual = model.model.encoder(torch.from_numpy(features)).last_hidden_state.numpy()
    difference = float(np.abs(actual - expected).max())
    print(f"max |transformers - CTranslate2| encoder output: {difference:.3g} (scale {np.abs(expected).max():.3g})")
    assert difference < ENCODER_TOLERANCE


@pytest.mark.skipif(not KIDS_FILE.is_file(), reason=f"{KIDS_FILE} not available")
def test_transcript_matches_ctranslate2_on_ravdess(models):
    import ctranslate2
    import torch

    from abhinaya.audio import load_audio

    model, processor, ct2_model = models
    audio = load_audio(KIDS_FILE, 16_000)
    features = _features(processor, audio)

    encoded = _ct2_encode(ct2_model, features)
    with torch.no_grad():
        hidden = model.model.encoder(torch.from_numpy(features)).last_hidden_state.numpy()
    difference = float(np.abs(hidden - encoded).max())
    print(f"RAVDESS encoder max abs difference: {difference:.3g}")
    assert difference < ENCODER_TOLERANCE

    with torch.no_grad():
        tokens = model.generate(torch.from_numpy(features), language="en", task="transcribe", num_beams=1, do_sample=False)
    ours = processor.batch_decode(tokens, skip_special_tokens=True)[0]

    tokenizer = processor.tokenizer
    prompt = tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"])
    result = ct2_model.generate(ctranslate2.StorageView.from_array(features), [prompt], beam_size=1)
    theirs = tokenizer.decode(result[0].sequences_ids[0], skip_special_tokens=True)
    print(f"transformers: {ours!r}  CTranslate2: {theirs!r}")

    assert _normalise(ours) == KIDS_TEXT
    assert _normalise(theirs) == _normalise(ours)
