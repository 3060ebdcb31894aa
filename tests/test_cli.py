import json
import subprocess
import sys

import numpy as np
import pytest

from abhinaya.cli import main
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance, read_manifest, write_manifest
from abhinaya.predictions import read_predictions, table_from_probs, write_predictions

DESIGN_SUBCOMMANDS = ["prepare", "transcribe", "train", "predict", "ensemble", "evaluate", "run", "serve", "models", "demo"]


def test_help_lists_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "abhinaya.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for name in DESIGN_SUBCOMMANDS:
        assert name in out


def test_serve_names_a_missing_run_folder(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "missing" in err and "run folder not found" in err


@pytest.fixture
def scored(tmp_path):
    ls = LabelSet(["angry", "sad", "happy"])
    utts = [Utterance(f"u{i}", label=lab, split="test") for i, lab in enumerate(["angry", "sad", "happy", "sad"])]
    manifest = write_manifest(tmp_path / "m.jsonl", utts)
    rng = np.random.default_rng(0)
    paths = []
    for name in ("s1", "s2", "t1"):
        probs = rng.dirichlet(np.ones(3), size=4)
        paths.append(write_predictions(tmp_path / f"{name}.csv", table_from_probs([u.id for u in utts], probs, ls)))
    return tmp_path, manifest, paths


def test_evaluate_prints_json_and_writes_png(scored, capsys):
    tmp_path, manifest, paths = scored
    assert main(["evaluate", str(paths[0]), str(manifest), "-o", str(tmp_path / "r.json")]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("macro_f1", "ua", "wa", "weighted_f1", "per_class"):
        assert key in report
    assert set(report["per_class"]) == {"angry", "sad", "happy"}
    assert (tmp_path / "s1.confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "r.json").read_text()) == report


def test_ensemble_majority_with_tiebreak_and_msp_format(scored, capsys):
    tmp_path, manifest, paths = scored
    out = tmp_path / "vote.csv"
    assert main(["ensemble", *map(str, paths), "-o", str(out), "--method", "majority", "--tiebreak", str(paths[1])]) == 0
    vote = read_predictions(out)
    members = [read_predictions(p) for p in paths]
    for i, utt_id in enumerate(vote.ids):
        votes = [m.labels[m.ids.index(utt_id)] for m in members]
        counts = {lab: votes.count(lab) for lab in votes}
        top = max(counts.values())
        winners = [lab for lab, c in counts.items() if c == top]
        if len(winners) == 1:
            assert vote.labels[i] == winners[0]
        elif votes[1] in winners:
            assert vote.labels[i] == votes[1]
    sub = tmp_path / "sub.csv"
    assert main(["ensemble", *map(str, paths), "-o", str(sub), "--method", "soft", "--format", "msp"]) == 0
    lines = sub.read_text().splitlines()
    assert lines[0] == "FileName,EmoClass" and len(lines) == 5
    assert all(line.split(",")[1] in "ASHUFDCN" for line in lines[1:])


def test_errors_are_one_line_naming_the_file(scored, capsys):
    tmp_path, manifest, paths = scored
    assert main(["evaluate", str(tmp_path / "missing.csv"), str(manifest)]) == 1
    assert "missing.csv" in capsys.readouterr().err
    short = tmp_path / "short.csv"
    short.write_text("FileName,EmoClass\nu0,sad\n")
    assert main(["ensemble", str(paths[0]), str(short), "-o", str(tmp_path / "x.csv")]) == 1
    err = capsys.readouterr().err
    assert "short.csv" in err and "u1" in err and "Traceback" not in err
    assert main(["ensemble", str(paths[0]), "-o", str(tmp_path / "x.csv")]) == 1
    assert main(["ensemble", *map(str, paths), "-o", str(tmp_path / "x.csv"), "--method", "weighted", "--weights", "a,b"]) == 1
    assert "--weights" in capsys.readouterr().err


def test_prepare_reports_bad_files_and_writes_the_rest(tmp_path, capsys):
    from abhinaya.manifest import read_manifest
    from abhinaya.testing.dummies import make_dummy_ravdess

    root = make_dummy_ravdess(tmp_path / "ravdess", actors=(1, 2, 3))
    corrupt = next(root.rglob("*.wav"))
    corrupt.write_bytes(b"not audio")
    (root / "Actor_01" / "notes-about-actor.wav").write_bytes(b"")
    out = tmp_path / "m.jsonl"
    assert main(["prepare", "ravdess", str(root), "-o", str(out), "--test-speakers", "3"]) == 0
    captured = capsys.readouterr()
    assert corrupt.name in captured.err and "notes-about-actor.wav" in captured.err
    utts = read_manifest(out)
    assert len(utts) == 3 * 16 - 1
    assert {u.split for u in utts if u.speaker == "03"} == {"test"}
    assert main(["prepare", "ravdess", str(root), "-o", str(tmp_path / "s.jsonl"), "--strict"]) == 1
    assert "strict" in capsys.readouterr().err
    assert not (tmp_path / "s.jsonl").exists()
    assert main(["prepare", "ravdess", str(tmp_path / "nowhere"), "-o", str(out)]) == 1
    assert "nowhere" in capsys.readouterr().err


def _no_offline_weights(name):
    raise ModuleNotFoundError(f"the weight package of {name} is not installed")


@pytest.fixture
def one_torch_thread():
    """Tiny models gain nothing from more threads, and lose much when another process keeps a core busy."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_demo_runs_end_to_end(tmp_path, capsys, monkeypatch, one_torch_thread):
    # The real Whisper-base and SmolLM2 are never read here: tiny random-weight stand-ins run every stage.
    monkeypatch.setattr("abhinaya.demo._offline_model", _no_offline_weights)
    monkeypatch.setenv("ABHINAYA_FEATURE_CACHE", str(tmp_path / "users-feature-cache"))
    assert main(["demo", "--workdir", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "tiny random-weight Whisper" in out and "tiny random-weight Llama" in out
    run = tmp_path / "run"
    stages = json.loads((run / "stages.json").read_text())["stages"]
    members = ("s1", "s2", "st1", "t1", "t2", "egemaps")
    assert {"prepare", "transcribe", "ensemble", "report", *(f"train {m}" for m in members)} <= set(stages)
    # every member and the system predict the test speakers
    test = sorted(u.id for u in read_manifest(tmp_path / "manifest.split.jsonl") if u.split == "test")
    for table in (*members, "majority", "system"):
        assert sorted(read_predictions(run / "predictions" / f"{table}.test.csv").ids) == test
    # the speech LLM members' frozen Whisper output is cached in the work folder, not the user's cache
    assert (tmp_path / "features").is_dir() and not (tmp_path / "users-feature-cache").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    # the miniature corpus carries learnable emotion cues: S1 must beat chance (1/8) clearly
    assert metrics["test"]["s1"]["macro_f1"] > 0.4
    assert "(chosen)" in out and f"abhinaya predict {run}" in out
    assert (run / "report.html").is_file()


def test_predict_offers_every_speaker_source(capsys):
    from abhinaya.cli import build_parser
    from abhinaya.recipes import SPEAKER_SOURCES

    parser = build_parser()
    for source in SPEAKER_SOURCES:
        assert parser.parse_args(["predict", "RUN", "IN", "-o", "OUT", "--speaker-from", source]).speaker_from == source
    assert parser.parse_args(["predict", "RUN", "IN", "-o", "OUT"]).speaker_from is None  # the run's own setting
    with pytest.raises(SystemExit):
        parser.parse_args(["predict", "RUN", "IN", "-o", "OUT", "--speaker-from", "guess"])
    assert "guess" in capsys.readouterr().err


def test_help_does_not_import_torch():
    """`abhinaya --help` answers at once: building the parser imports neither torch nor transformers."""
    import subprocess
    import sys

    code = ("import sys, abhinaya.cli; abhinaya.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
