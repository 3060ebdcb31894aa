"""Shared fixtures: tiny random-weight pretrained folders (no model hub), written by ``abhinaya.testing.tiny``."""

import os

import pytest

from abhinaya.testing.tiny import (  # noqa: F401  (the configs are imported from here by some tests)
    TINY_LLAMA,
    TINY_LLAMA_CHAT_TEMPLATE,
    TINY_LLAMA_SPECIALS,
    TINY_LLAMA_WORDS,
    TINY_WAVLM,
    TINY_WHISPER,
    write_tiny_llama,
    write_tiny_wavlm,
    write_tiny_whisper,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

try:  # property tests: the same examples on every run, unless HYPOTHESIS_PROFILE=explore asks for new ones
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("repeatable", derandomize=True, database=None)
    _hypothesis_settings.register_profile("explore", derandomize=False, max_examples=2000)
    _hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
except ImportError:
    pass


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory):
    """A folder holding a tiny random Whisper in the transformers layout,
    standing in for a pretrained checkpoint."""
    return write_tiny_whisper(tmp_path_factory.mktemp("models") / "tiny-whisper")


@pytest.fixture(scope="session")
def tiny_wavlm_dir(tmp_path_factory):
    """A tiny random WavLM (layer-normalised CNN, as WavLM-Large) standing in for WavLM-Large."""
    return write_tiny_wavlm(tmp_path_factory.mktemp("models") / "tiny-wavlm")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A tiny random Llama causal LM with a word-level tokenizer and a chat template,
    standing in for SmolLM2 / Llama (a folder as ``save_pretrained`` writes it)."""
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")
