import numpy as np
import pytest
import soundfile as sf

from abhinaya.corpora.common import (
    PrepareError,
    assign_splits,
    check_audio_file,
    check_audio_files,
    require_source,
    speaker_list,
)
from abhinaya.manifest import Utterance


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "good.wav"
    sf.write(str(path), np.zeros(8000, dtype=np.float32) + 0.1, 16000, subtype="PCM_16")
    return path


def test_check_audio_file_modes(wav):
    assert check_audio_file(wav, "decode") == (0.5, None)
    assert check_audio_file(wav, "header") == (0.5, None)
    assert check_audio_file(wav, "none") == (None, None)
    with pytest.raises(ValueError, match="unknown audio check"):
        check_audio_file(wav, "full")


def test_check_audio_file_problems_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.wav"
    for mode in ("decode", "header"):
        for path, reason in ((garbage, "cannot be decoded"), (empty, "empty (0 bytes)"), (missing, "not found")):
            duration, problem = check_audio_file(path, mode)
            assert duration is None
            assert problem.startswith(f"{path}: ") and reason in problem


def test_decode_catches_nan_that_the_header_cannot(tmp_path):
    path = tmp_path / "nan.wav"
    wave = np.zeros(1600, dtype=np.float32)
    wave[100] = np.nan
    sf.write(str(path), wave, 16000, subtype="FLOAT")
    assert check_audio_file(path, "header") == (0.1, None)
    duration, problem = check_audio_file(path, "decode")
    assert duration is None and "NaN" in problem and str(path) in problem


def test_check_audio_files_keeps_order(wav, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"x" * 100)
    results = check_audio_files([wav, bad, wav], "decode")
    assert results[0] == (0.5, None) and results[2] == (0.5, None)
    assert results[1][0] is None and str(bad) in results[1][1]


def _utterances():
    return [Utterance(id=f"u{i}", speaker=spk, split="train") for i, spk in enumerate(["01", "02", "03", "03", None])]


def test_assign_splits_moves_listed_speakers():
    utts = _utterances()
    assert assign_splits(utts, dev_speakers=["02"], test_speakers="3") == []
    assert [u.split for u in utts] == ["train", "dev", "test", "test", "train"]


def test_assign_splits_forces_one_split():
    utts = _utterances()
    assert assign_splits(utts, split="test") == []
    assert {u.split for u in utts} == {"test"}


def test_assign_splits_reports_unknown_speaker():
    utts = _utterances()
    problems = assign_splits(utts, test_speakers=["01", "42"], source="/corpus")
    assert len(problems) == 1
    assert problems[0].startswith("/corpus: speaker '42' named in test_speakers is not in the corpus")
    assert utts[0].split == "test"


def test_assign_splits_rejects_conflicts():
    with pytest.raises(ValueError, match="both"):
        assign_splits(_utterances(), dev_speakers=["01"], test_speakers=["01"])
    with pytest.raises(ValueError, match="both"):
        assign_splits(_utterances(), dev_speakers=["1"], test_speakers=["01"])
    with pytest.raises(ValueError, match="split="):
        assign_splits(_utterances(), test_speakers=["01"], split="train")


def test_speaker_list_accepts_strings_and_numbers():
    assert speaker_list("01, 02,") == ["01", "02"]
    assert speaker_list([1, "2"]) == ["1", "2"]
    assert speaker_list(None) == []


def test_require_source(tmp_path, wav):
    with pytest.raises(PrepareError, match="does not exist"):
        require_source(tmp_path / "nope")
    with pytest.raises(PrepareError, match="expected a folder"):
        require_source(wav, "folder")
    assert require_source(tmp_path) == tmp_path
