"""Prediction a block at a time: part files written as it goes, resumption after an interruption, speakers kept
whole, and several processes (torchrun) merged into the table one process writes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from abhinaya.cli import main
from abhinaya.manifest import Utterance
from abhinaya.predict.inputs import gather_inputs, predict
from abhinaya.predict.predictor import MemberPredictor
from abhinaya.predict.stream import (
    StreamError,
    blocks_of,
    merge_parts,
    part_files,
    speaker_groups,
)
from abhinaya.predictions import read_predictions


def quiet(_message):
    pass


def same_table(a, b, atol=1e-4):
    """Same rows, classes and probabilities. Blocks form their own length-bucketed batches, so the padding next to a
    file differs from one pass's: equal to float32 precision (measured differences about 2e-5)."""
    assert a.ids == b.ids
    assert a.labels == b.labels
    np.testing.assert_allclose(a.probs, b.probs, atol=atol)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, corpus):
    """A folder of 15 corpus files (3 actors) and one that is not audio."""
    folder = tmp_path_factory.mktemp("inputs")
    files = sorted(corpus.rglob("*.wav"))
    chosen = [f for f in files if f.parent.name in ("Actor_01", "Actor_02", "Actor_05")][:15]
    for f in chosen:
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "03-01-05-01-01-01-02-broken.wav").write_bytes(b"RIFF\x00\x00 not audio")
    return folder


def test_blocks_never_split_a_group():
    speakers = ["a", "a", "b", "b", None, "a", "c"]
    groups = speaker_groups([Utterance(id=str(i), audio="x", speaker=s) for i, s in enumerate(speakers)], True)
    assert groups == [[0, 1, 5], [2, 3], [4], [6]]
    assert list(blocks_of(groups, 3)) == [[0, 1, 5], [2, 3, 4], [6]]
    assert speaker_groups([Utterance(id="a", audio="x", speaker="s")] * 2, False) == [[0], [1]]


def test_a_merge_that_misses_inputs_says_so():
    utterances = [Utterance(id=f"u{i}", audio=f"{i}.wav") for i in range(3)]
    block = {"indices": [0, 1], "table": None, "recordings": None, "segmented": False, "members": {}}
    with pytest.raises(StreamError, match="cover 2 of 3 inputs.*u2.*shared"):
        merge_parts([block], utterances, None)


def test_blockwise_prediction_equals_one_pass_and_names_the_bad_file(tmp_path, speaker_norm_run, inputs, capsys):
    out = tmp_path / "out.csv"
    assert main(["predict", str(speaker_norm_run), str(inputs), "-o", str(out), "--block-size", "4",
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "broken.wav" in captured.err and "1 of 16 inputs could not be used" in captured.out
    assert not part_files(out)  # merged and removed
    whole = predict(speaker_norm_run, [inputs], progress=False, report=quiet)
    same_table(read_predictions(out), whole)


def test_an_interrupted_prediction_resumes_where_it_stopped(tmp_path, speaker_norm_run, inputs, monkeypatch, capsys):
    out = tmp_path / "out.csv"
    args = ["predict", str(speaker_norm_run), str(inputs), "-o", str(out), "--block-size", "3", "--no-progress"]
    original = MemberPredictor.predict_block
    calls = []

    def interrupted(self, utterances, progress=True):
        calls.append([u.id for u in utterances])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, utterances, progress)

    monkeypatch.setattr(MemberPredictor, "predict_block", interrupted)
    assert main(args) != 0
    assert not out.exists()  # nothing half-written where the table goes
    (part,) = part_files(out)
    lines = part.read_text().splitlines()
    assert len(lines) == 3  # the header and the two finished blocks
    done = {i for line in lines[1:] for i in json.loads(line)["indices"]}
    assert len(done) == 6
    with part.open("a") as handle:  # what an interruption in the middle of a write leaves
        handle.write('{"indices": [6, 7, 8], "table": {"ids": ["03-01')
    calls.clear()
    monkeypatch.setattr(MemberPredictor, "predict_block", lambda self, u, progress=True: (
        calls.append([x.id for x in u]), original(self, u, progress))[1])
    assert main(args) == 0
    assert "resuming: 6 input(s) already predicted" in capsys.readouterr().err
    assert sum(len(c) for c in calls) == 16 - 6  # the torn block is predicted again, the finished ones are not
    whole = predict(speaker_norm_run, [inputs], progress=False, report=quiet)
    same_table(read_predictions(out), whole)
    assert not part_files(out)


def test_a_part_file_of_other_settings_is_refused_until_restart(tmp_path, speaker_norm_run, inputs, monkeypatch,
                                                                capsys):
    out = tmp_path / "out.csv"
    base = ["predict", str(speaker_norm_run), str(inputs), "-o", str(out), "--no-progress", "--block-size", "4"]

    def stop(self, utterances, progress=True):
        raise KeyboardInterrupt

    monkeypatch.setattr(MemberPredictor, "predict_block", stop)
    assert main([*base, "--speaker-from", "none"]) != 0
    monkeypatch.undo()
    capsys.readouterr()
    assert main([*base, "--speaker-from", "filename"]) == 1
    err = capsys.readouterr().err
    assert "part-0-of-1.jsonl was written by another prediction" in err and "--restart" in err
    assert main([*base, "--speaker-from", "filename", "--restart"]) == 0
    assert read_predictions(out).ids


def test_a_speaker_is_normalised_whole_whatever_the_blocks(tmp_path, speaker_norm_run, inputs):
    """With per-speaker normalisation each speaker's files share a block, so the table is the one-pass table."""
    out = tmp_path / "out.csv"
    assert main(["predict", str(speaker_norm_run), str(inputs), "-o", str(out), "--block-size", "1",
                 "--speaker-from", "filename", "--no-progress"]) == 0
    whole = predict(speaker_norm_run, [inputs], speaker_from="filename", progress=False, report=quiet)
    same_table(read_predictions(out), whole)
    alone = predict(speaker_norm_run, [inputs], speaker_from="none", progress=False, report=quiet)
    assert not np.allclose(alone.probs, whole.probs, atol=1e-4)  # normalisation did change something


def test_every_input_unusable_is_one_clear_error(tmp_path, speaker_norm_run, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("a.wav", "b.flac"):
        (bad / name).write_bytes(b"\x00" * 10)
    out = tmp_path / "out.csv"
    assert main(["predict", str(speaker_norm_run), str(bad), "-o", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "a.wav" in err and "b.flac" in err and "none of the inputs could be used" in err
    assert not out.exists() and not part_files(out)


@pytest.mark.slow
def test_two_processes_write_the_table_of_one(tmp_path, speaker_norm_run, inputs):
    """torchrun with 2 CPU processes: each predicts its shard, the first merges them in input order."""
    one = tmp_path / "one.csv"
    assert main(["predict", str(speaker_norm_run), str(inputs), "-o", str(one), "--block-size", "2",
                 "--no-progress"]) == 0
    two = tmp_path / "two.csv"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
         "abhinaya.cli", "predict", str(speaker_norm_run), str(inputs), "-o", str(two), "--block-size", "2",
         "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    same_table(read_predictions(two), read_predictions(one))
    assert not part_files(two)
    assert done.stdout.count("wrote 15 predictions") == 1  # one process writes the table


def test_the_member_predictor_fingerprint_names_what_decides_the_result(speaker_norm_run):
    from abhinaya.predict.inputs import inputs_for_run

    recipe, source, _ = inputs_for_run(speaker_norm_run, [], split=None, speaker_from="none")
    fingerprint = MemberPredictor(speaker_norm_run, recipe, source, report=quiet).fingerprint()
    assert fingerprint["speaker_from"] == "none" and fingerprint["run"].endswith("run")
    assert gather_inputs([], speaker_from="none") == []
