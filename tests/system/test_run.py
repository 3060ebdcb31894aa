"""``abhinaya run`` on a miniature RAVDESS with tiny random-weight members: every stage, the cache, resuming,
joining a run trained elsewhere, and prediction with the system run folder."""

import json

import numpy as np
import pytest
import yaml

from abhinaya.cli import main
from abhinaya.predictions import read_predictions
from abhinaya.system import runner
from abhinaya.system.runner import SystemRunError, run_system
from abhinaya.testing.dummies import make_dummy_ravdess


def quiet(_message):
    pass


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_dummy_ravdess(tmp_path_factory.mktemp("corpus") / "ravdess", actors=(1, 2, 3, 4, 5, 6))


def write_system(folder, tiny_whisper_dir, root):
    """A system of three tiny S1 variants (members need no text, so there is no transcription stage)."""
    member = {
        "member": "s1",
        "data": {"corpus": "ravdess", "root": None},
        "audio": {"train_crop_seconds": 0.5, "gain_jitter_db": 0.0},
        "model": {"encoder": str(tiny_whisper_dir), "attention_dim": 8, "head_hidden": 16, "freeze_layers": 1},
        "train": {"epochs": 1, "batch_size": 8, "head_lr": 5e-3, "encoder_lr": 1e-3, "progress": False},
    }
    (folder / "s1.yaml").write_text(yaml.safe_dump(member))
    system = {
        "name": "tiny",
        "data": {"corpus": "ravdess", "root": str(root), "dev_speakers": ["04", "05"], "test_speakers": ["06"]},
        "members": {
            "a": {"recipe": "s1.yaml"},
            "b": {"recipe": "s1.yaml", "set": ["train.seed=1", "model.head_hidden=8"]},
            "c": {"recipe": "s1.yaml", "set": ["train.seed=2", "model.pooling=mean_std"]},
        },
        "ensemble": {"tiebreak": "b", "folds": 2},
    }
    path = folder / "system.yaml"
    path.write_text(yaml.safe_dump(system))
    return path


@pytest.fixture(scope="module")
def system_run(tmp_path_factory, tiny_whisper_dir, corpus):
    folder = tmp_path_factory.mktemp("system")
    recipe = write_system(folder, tiny_whisper_dir, corpus)
    run_dir = folder / "run"
    result = run_system(recipe, run_dir, progress=False, echo=quiet)
    return recipe, run_dir, result


def test_every_stage_runs_and_writes_the_system_folder(system_run):
    recipe, run_dir, result = system_run
    assert set(result.statuses.values()) == {"ran"}
    assert list(result.statuses) == [
        "prepare", "train a", "predict a", "train b", "predict b", "train c", "predict c", "ensemble", "report",
    ]
    for name in "abc":
        assert (run_dir / "members" / name / "model.safetensors").is_file()
        for split in ("dev", "test"):
            table = read_predictions(run_dir / "predictions" / f"{name}.{split}.csv")
            assert len(table) == {"dev": 32, "test": 16}[split]  # 8 emotions x 2 sentences per actor
    record = json.loads((run_dir / "ensemble.json").read_text())
    assert record["chosen"] == result.chosen and record["members"] == ["a", "b", "c"]
    for method in ("majority", "soft", "weighted", "stacking", "best_member"):
        assert (run_dir / "predictions" / f"{method}.test.csv").is_file()
    html = (run_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and result.chosen in html
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) >= {"test", "dev"}
    log = (run_dir / "run.log").read_text()
    assert "[9/9] report: done" in log and "\r" not in log


def test_a_rerun_with_nothing_changed_reuses_every_stage(system_run):
    recipe, run_dir, _ = system_run
    before = (run_dir / "predictions" / "system.test.csv").read_bytes()
    result = run_system(recipe, run_dir, progress=False, echo=quiet)
    assert set(result.statuses.values()) == {"reused"}
    assert (run_dir / "predictions" / "system.test.csv").read_bytes() == before


def test_changing_one_member_redoes_that_member_and_the_ensemble_only(system_run, tmp_path):
    recipe, run_dir, _ = system_run
    lines = []
    result = run_system(recipe, run_dir, ["c.train.seed=3"], dry_run=True, progress=False, echo=lines.append)
    assert result.statuses == {
        "prepare": "would reuse", "train a": "would reuse", "predict a": "would reuse", "train b": "would reuse",
        "predict b": "would reuse", "train c": "would run", "predict c": "would run", "ensemble": "would run",
        "report": "would run",
    }
    assert any(line.startswith("would run") and "train c" in line for line in lines)


def test_predict_with_the_system_folder_matches_the_run(system_run, tmp_path, capsys):
    recipe, run_dir, _ = system_run
    out, members = tmp_path / "p.csv", tmp_path / "members"
    manifest = run_dir / "data" / "manifest.jsonl"
    code = main(["predict", str(run_dir), str(manifest), "--split", "test", "-o", str(out), "--members", str(members),
                 "--no-progress"])
    assert code == 0
    table, expected = read_predictions(out), read_predictions(run_dir / "predictions" / "system.test.csv")
    assert table.ids == expected.ids and table.labels == expected.labels
    np.testing.assert_allclose(table.probs, expected.probs, atol=1e-5)
    for name in "abc":
        member = read_predictions(members / f"{name}.csv")
        np.testing.assert_allclose(member.probs, read_predictions(run_dir / "predictions" / f"{name}.test.csv").probs,
                                   atol=1e-5)


def test_predict_checks_its_inputs_before_loading_members(system_run, tmp_path, capsys, monkeypatch):
    _, run_dir, _ = system_run
    import abhinaya.runs

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(abhinaya.runs, "load_run", no_loading)
    code = main(["predict", str(run_dir), str(tmp_path / "missing.wav"), "-o", str(tmp_path / "p.csv")])
    assert code == 1
    assert "missing.wav" in capsys.readouterr().err


def test_predict_classes_of_a_system_are_checked_before_loading_members(system_run, tmp_path, capsys, monkeypatch):
    _, run_dir, _ = system_run
    import abhinaya.runs

    manifest = run_dir / "data" / "manifest.jsonl"
    real = abhinaya.runs.load_run

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(abhinaya.runs, "load_run", no_loading)
    code = main(["predict", str(run_dir), str(manifest), "--split", "test", "-o", str(tmp_path / "p.csv"),
                 "--classes", "happy,boredom"])
    assert code == 1 and "the model has no class 'boredom'" in capsys.readouterr().err
    monkeypatch.setattr(abhinaya.runs, "load_run", real)
    full, some = tmp_path / "full.csv", tmp_path / "some.csv"
    assert main(["predict", str(run_dir), str(manifest), "--split", "test", "-o", str(full), "--no-progress"]) == 0
    assert main(["predict", str(run_dir), str(manifest), "--split", "test", "-o", str(some), "--no-progress",
                 "--classes", "happy,sad"]) == 0
    a, b = read_predictions(full), read_predictions(some)
    assert list(b.label_set) == ["happy", "sad"] and b.ids == a.ids
    kept = a.probs[:, a.label_set.encode_many(["happy", "sad"])]
    np.testing.assert_allclose(b.probs, kept / kept.sum(axis=1, keepdims=True), atol=2e-6)


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, tiny_whisper_dir, corpus, monkeypatch):
    recipe = write_system(tmp_path, tiny_whisper_dir, corpus)
    run_dir = tmp_path / "run"
    real = runner.SystemPlan._predict

    def dies_at_b(self, name, manifest):
        if name == "b":
            raise KeyboardInterrupt
        return real(self, name, manifest)

    monkeypatch.setattr(runner.SystemPlan, "_predict", dies_at_b)
    with pytest.raises(KeyboardInterrupt):
        run_system(recipe, run_dir, progress=False, echo=quiet)
    monkeypatch.setattr(runner.SystemPlan, "_predict", real)
    result = run_system(recipe, run_dir, progress=False, echo=quiet)
    assert [s for s, status in result.statuses.items() if status == "reused"] == ["prepare", "train a", "predict a",
                                                                                   "train b"]
    assert result.statuses["predict b"] == "ran"


def test_a_joined_run_that_trained_on_a_held_out_speaker_is_refused(system_run, tmp_path, corpus):
    recipe, run_dir, _ = system_run
    # member a of the system trained on actors 1-3; a system holding actor 03 out must refuse it
    joined = str(run_dir / "members" / "a")
    with pytest.raises(SystemRunError, match="speaker.*03"):
        run_system(recipe, tmp_path / "other", [f"members.a={{run: {joined}}}", 'data.dev_speakers=["03","04"]',
                                                'data.test_speakers=["05","06"]'], progress=False, echo=quiet)


def test_a_joined_run_takes_the_place_of_training(system_run, tmp_path):
    recipe, run_dir, _ = system_run
    joined = str(run_dir / "members" / "a")
    result = run_system(recipe, tmp_path / "joined", [f"members.a={{run: {joined}}}"], progress=False, echo=quiet)
    assert result.statuses["join a"] == "ran" and "train a" not in result.statuses
    same = read_predictions(tmp_path / "joined" / "predictions" / "a.test.csv")
    np.testing.assert_allclose(same.probs, read_predictions(run_dir / "predictions" / "a.test.csv").probs, atol=1e-6)


def test_recipe_errors_name_the_problem(tmp_path, tiny_whisper_dir, corpus):
    recipe = write_system(tmp_path, tiny_whisper_dir, corpus)
    with pytest.raises(ValueError, match="tiebreak 'z' is not a member"):
        run_system(recipe, tmp_path / "r", ["ensemble.tiebreak=z"], dry_run=True, echo=quiet)
    with pytest.raises(ValueError, match="members.a.recipee"):
        run_system(recipe, tmp_path / "r", ["members.a.recipee=x"], dry_run=True, echo=quiet)
    with pytest.raises(SystemRunError, match="corpus folder not found"):
        run_system(recipe, tmp_path / "r", [f"data.root={tmp_path / 'nowhere'}"], dry_run=True, echo=quiet)
    with pytest.raises(ValueError, match="member recipe"):
        run_system(tmp_path / "s1.yaml", tmp_path / "r", dry_run=True, echo=quiet)


def test_an_utterance_a_member_could_not_predict_gets_the_vote_of_the_others():
    from abhinaya.evaluation.combiners import FittedEnsemble
    from abhinaya.labels import LabelSet
    from abhinaya.predictions import table_from_probs
    from abhinaya.system.runner import apply_ensemble

    labels = LabelSet(["angry", "happy", "sad"])

    def table(ids, classes):
        probs = np.eye(3)[[labels.encode(c) for c in classes]] * 0.8 + 0.2 / 3
        return table_from_probs(ids, probs, labels, source="t")

    tables = {
        "a": table(["u1", "u2", "u3"], ["angry", "happy", "sad"]),
        "b": table(["u1", "u2", "u3"], ["angry", "sad", "happy"]),
        "t": table(["u1"], ["sad"]),  # a text member: u2 and u3 had no transcript
    }
    ensemble = FittedEnsemble(method="majority", members=["a", "b", "t"], label_set=list(labels), tiebreak="b")
    notes = []
    out = apply_ensemble(ensemble, tables, notes.append, "input")
    assert out.ids == ["u1", "u2", "u3"]
    assert out.labels == ["angry", "sad", "happy"]  # u2, u3: a and b tie, b breaks the tie
    assert out.probs.shape == (3, 3) and np.allclose(out.probs.sum(axis=1), 1.0)
    assert notes == ["note: 2 input utterance(s) have no prediction from t; the majority vote of a, b predicts them"]


def test_a_captured_log_holds_messages_not_progress_bars(system_run, tmp_path):
    import subprocess
    import sys

    _, run_dir, _ = system_run
    manifest = run_dir / "data" / "manifest.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "abhinaya.cli", "predict", str(run_dir), str(manifest), "--split", "test",
         "-o", str(tmp_path / "p.csv")], capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "[3/3] c:" in done.stderr


def test_system_predict_reports_an_unreadable_file_once_and_predicts_the_rest(tmp_path, monkeypatch):
    from abhinaya.system import predict as system_predict
    from abhinaya.system.recipe import MemberSpec, SystemRecipe
    from abhinaya.manifest import Utterance

    good = tmp_path / "good.wav"
    import soundfile as sf

    sf.write(good, 0.1 * np.sin(np.arange(16000) / 5.0), 16000)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")

    def fake_transcribe(manifest, output, config, progress, report):
        from abhinaya.asr.transcribe import TranscriptionSummary
        from abhinaya.manifest import read_manifest, write_manifest

        rows = read_manifest(manifest)
        write_manifest(output, [u if u.id == "bad" else Utterance(**{**u.to_dict(), "text": "hello"}) for u in rows])
        return TranscriptionSummary(1, 0, 1, 0.0, str(output), {"bad": "cannot be decoded as audio"})

    monkeypatch.setattr("abhinaya.asr.transcribe.transcribe_manifest", fake_transcribe)
    notes = []
    recipe = SystemRecipe(members={"a": MemberSpec(recipe="x.yaml")})
    kept = system_predict._transcribe(
        [Utterance(id="good", audio=str(good)), Utterance(id="bad", audio=str(bad))], recipe, False, notes.append
    )
    assert [u.id for u in kept] == ["good"] and kept[0].text == "hello"
    assert sum("bad.wav" in note for note in notes) == 1 and any(n.startswith("skipped: ") for n in notes)
