"""Hostile input, property-based: whatever bytes a user's file holds, the readers of audio, manifests and prediction
tables either return well-formed data or raise their own error naming the file, never anything else."""

import json
import math
import os

import numpy as np
import pytest
import soundfile as sf

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from abhinaya.audio import AudioError, load_audio  # noqa: E402
from abhinaya.manifest import ManifestError, read_manifest  # noqa: E402
from abhinaya.predictions import PredictionError, read_predictions  # noqa: E402

# 60 examples a test in the default (repeatable) profile; HYPOTHESIS_PROFILE=explore runs its own count, new ones each time
EXAMPLES = settings.default.max_examples if os.environ.get("HYPOTHESIS_PROFILE") == "explore" else 60
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
EXTENSIONS = st.sampled_from([".wav", ".flac", ".ogg", ".mp3", ".txt", "", ".WAV"])
NAMES = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
                min_size=1, max_size=12).filter(lambda n: n not in (".", ".."))


def _check_audio(path):
    try:
        wave = load_audio(path, 16000)
    except AudioError as err:
        assert str(path) in str(err) and err.reason and "\n" not in err.reason
        return None
    assert wave.dtype == np.float32 and wave.ndim == 1 and np.isfinite(wave).all()
    return wave


@FAST
@given(data=st.binary(max_size=2048), ext=EXTENSIONS)
def test_any_bytes_as_audio(tmp_path, data, ext):
    path = tmp_path / f"input{ext}"
    path.write_bytes(data)
    _check_audio(path)


@FAST
@given(rate=st.integers(1, 400_000), channels=st.integers(1, 8), frames=st.integers(0, 4000),
       special=st.sampled_from([None, np.nan, np.inf, -np.inf]), subtype=st.sampled_from(["FLOAT", "PCM_16"]))
def test_valid_files_with_odd_rates_channels_and_values(tmp_path, rate, channels, frames, special, subtype):
    path = tmp_path / "odd.wav"
    samples = np.random.default_rng(0).uniform(-0.5, 0.5, size=(frames, channels)).astype(np.float32)
    if special is not None and frames:
        samples[frames // 2, 0] = special
    sf.write(path, samples, rate, subtype=subtype)
    wave = _check_audio(path)
    if wave is not None:
        assert abs(len(wave) - frames * 16000 / rate) <= 2 + 0.01 * len(wave)


@FAST
@given(data=st.binary(max_size=1024))
def test_truncated_flac(tmp_path, data):
    whole = tmp_path / "whole.flac"
    sf.write(whole, 0.1 * np.sin(np.arange(16000) / 5.0), 16000)
    raw = whole.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(raw[: len(data) % len(raw)] + data[:16])
    _check_audio(cut)


@FAST
@given(name=NAMES)
def test_odd_file_names_are_named_in_errors(tmp_path, name):
    path = tmp_path / f"{name}.wav"
    try:
        path.write_bytes(b"RIFF\x00\x00")
    except OSError:
        return  # the file system refuses the name itself
    _check_audio(path)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = st.sampled_from(["id", "audio", "label", "speaker", "split", "text", "duration", "gender", "context", "x"])


@FAST
@given(lines=st.lists(st.one_of(st.dictionaries(FIELDS, JSON_VALUES, max_size=6).map(json.dumps),
                                st.text(max_size=40)), max_size=6),
       tail=st.binary(max_size=8))
def test_any_manifest(tmp_path, lines, tail):
    path = tmp_path / "m.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-8") + tail)
    try:
        utterances = read_manifest(path)
    except ManifestError as err:
        assert str(path) in str(err)
        return
    for utt in utterances:
        assert isinstance(utt.id, str) and utt.id
        assert utt.duration is None or math.isfinite(utt.duration)


CELLS = st.one_of(st.text(max_size=6), st.sampled_from(["nan", "inf", "-1", "0.5", "1e400", "angry", "A", ""]))


@FAST
@given(header=st.lists(st.sampled_from(["FileName", "EmoClass", "prob_angry", "prob_sad", "x"]), max_size=4),
       rows=st.lists(st.lists(CELLS, max_size=5), max_size=5), tail=st.binary(max_size=6))
@example(header=["FileName", "EmoClass", "prob_angry", "prob_angry"], rows=[], tail=b"")
def test_any_prediction_table(tmp_path, header, rows, tail):
    path = tmp_path / "p.csv"
    text = "\n".join(",".join(cells) for cells in [header, *rows])
    path.write_bytes(text.encode("utf-8") + tail)
    try:
        table = read_predictions(path)
    except PredictionError as err:
        assert str(path) in str(err)
        return
    assert all(table.ids) and all(table.labels)
    if table.probs is not None:
        assert np.isfinite(table.probs).all() and (table.probs >= 0).all()


def test_a_sample_rate_too_low_for_speech_is_refused(tmp_path):
    path = tmp_path / "low.wav"
    sf.write(path, np.zeros((50, 1), dtype=np.float32) + 0.1, 8)
    with pytest.raises(AudioError, match="low.wav: sample rate 8 Hz is too low"):
        load_audio(path, 16000)


CSV_CELLS = st.one_of(st.text(max_size=8), st.sampled_from(["a.wav", "missing.wav", "angry", "neutral", "01", "train",
                                                            "dev", "M", "", '"', "x,y"]))


@FAST
@given(header=st.lists(st.sampled_from(["path", "label", "speaker", "split", "text", "gender", "PATH", "x"]),
                       max_size=6),
       rows=st.lists(st.lists(CSV_CELLS, max_size=7), max_size=6), tail=st.binary(max_size=6),
       check=st.sampled_from(["decode", "header"]))
def test_any_csv_listing(tmp_path, header, rows, tail, check):
    """``abhinaya prepare csv``: any listing gives usable utterances and problems naming their file, or one error
    naming the listing."""
    from abhinaya.corpora.common import PrepareError
    from abhinaya.corpora.generic_csv import prepare_csv

    sf.write(tmp_path / "a.wav", 0.1 * np.sin(np.arange(16000) / 5.0), 16000)
    path = tmp_path / "list.csv"
    path.write_bytes("\n".join(",".join(cells) for cells in [header, *rows]).encode("utf-8") + tail)
    try:
        result = prepare_csv(path, check=check)
    except PrepareError as err:
        assert str(path) in str(err) and "\n" not in str(err)
        return
    for utt in result.utterances:
        assert utt.id and utt.audio and utt.label
    for problem in result.problems:
        assert str(path) in problem or str(tmp_path) in problem


@FAST
@given(header=st.lists(st.sampled_from(["FileName", "arousal", "valence", "x", ""]), max_size=4),
       rows=st.lists(st.lists(CELLS, max_size=4), max_size=5), tail=st.binary(max_size=6))
def test_any_dimensions_table(tmp_path, header, rows, tail):
    from abhinaya.predictions import read_dimensions

    path = tmp_path / "p.dimensions.csv"
    path.write_bytes("\n".join(",".join(cells) for cells in [header, *rows]).encode("utf-8") + tail)
    try:
        table = read_dimensions(path)
    except PredictionError as err:
        assert str(path) in str(err)
        return
    assert table.values.shape == (len(table.ids), len(table.names)) and np.isfinite(table.values).all()
