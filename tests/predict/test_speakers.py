"""Where speakers come from at prediction (predict.speaker_from / --speaker-from), and what predict reports about
the inputs it uses in part."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from abhinaya.cli import main
from abhinaya.manifest import Utterance, read_manifest, write_manifest
from abhinaya.predict.inputs import (
    InputError,
    gather_inputs,
    predict_utterances,
    reads_as_emotion,
)
from abhinaya.predictions import read_predictions
from abhinaya.recipes import SPEAKER_SOURCES, PredictConfig
from abhinaya.runs import load_run


def _test_files(run_dir):
    return [u for u in read_manifest(run_dir / "data" / "splits.jsonl") if u.split == "test"]


@pytest.fixture
def emotion_folders(tmp_path, speaker_norm_run):
    """Actor 05's test files filed by emotion under anonymous names: emotions/Angry/clip0.wav, Happy/..., Sad/..."""
    root = tmp_path / "emotions"
    folder_of = {"angry": "Angry", "happy": "Happy", "sad": "Sad"}
    count = 0
    for utt in _test_files(speaker_norm_run):
        if utt.label in folder_of:
            target = root / folder_of[utt.label] / f"clip{count}.wav"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(utt.audio, target)
            count += 1
    return root


def test_names_that_read_as_emotions():
    for name in ("Angry", "anger", "HAPPY", "Joy", "sad", "Sadness", "Neutral", "fear", "Fearful", "Disgust",
                 "Surprise", "surprised", "Calm", "Boredom", "contempt", "A", "n", " Happy "):
        assert reads_as_emotion(name), name
    for name in ("Actor_01", "01", "alice", "speaker_3", "", None, "Angry_and_happy"):
        assert not reads_as_emotion(name), name


def test_the_sources_a_run_and_the_command_line_accept():
    assert SPEAKER_SOURCES == ("manifest", "filename", "folder", "none")
    assert PredictConfig().speaker_from == "manifest"
    with pytest.raises(ValueError, match="speaker_from"):
        PredictConfig(speaker_from="folders")
    with pytest.raises(InputError, match="choose one of"):
        gather_inputs([], speaker_from="guess")


def test_manifest_speakers_by_default_and_none_for_audio_paths(tmp_path, corpus):
    actor = corpus / "Actor_01"
    single = sorted(actor.iterdir())[0]
    rows = [Utterance(id="m1", audio=str(single), speaker="spk1"), Utterance(id="m2", audio=str(single), speaker=None)]
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    other = tmp_path / "other.wav"
    shutil.copy(single, other)
    got = {u.id: u.speaker for u in gather_inputs([manifest, corpus / "Actor_02", other])}
    assert got["m1"] == "spk1" and got["m2"] is None and got["other"] is None
    assert all(speaker is None for key, speaker in got.items() if key.endswith("-02"))
    assert all(u.speaker is None for u in gather_inputs([manifest], speaker_from="none"))


def test_filename_speakers_follow_the_runs_corpus_naming(tmp_path, corpus):
    flat = tmp_path / "flat"
    flat.mkdir()
    single = sorted((corpus / "Actor_01").iterdir())[0]
    shutil.copy(single, flat / "03-01-05-01-02-01-21.wav")
    shutil.copy(single, flat / "my_recording.wav")
    got = {u.id: u.speaker for u in gather_inputs([flat], corpus="ravdess", speaker_from="filename")}
    assert got == {"03-01-05-01-02-01-21": "21", "my_recording": None}
    assert {u.speaker for u in gather_inputs([corpus], corpus="ravdess", speaker_from="filename")} == {
        "01", "02", "03", "04", "05"
    }
    with pytest.raises(InputError, match="msp-podcast"):
        gather_inputs([flat], corpus="msp-podcast", speaker_from="filename")
    with pytest.raises(InputError, match="none"):
        gather_inputs([flat], corpus=None, speaker_from="filename")


def test_folder_speakers_are_the_folders_unless_named_as_emotions(tmp_path, corpus, emotion_folders):
    got = gather_inputs([corpus], speaker_from="folder")
    assert {u.speaker for u in got} == {str(corpus / f"Actor_{i:02d}") for i in range(1, 6)}
    with pytest.raises(InputError, match="Angry, Happy, Sad"):
        gather_inputs([emotion_folders], speaker_from="folder")


def test_emotion_folders_are_left_alone_by_default(tmp_path, speaker_norm_run, emotion_folders, capsys):
    """Files filed by emotion under anonymous names: by default no file has a speaker, so each one's prediction is
    the one it gets when given alone; grouping by the folders is refused, naming them."""
    out = tmp_path / "all.csv"
    capsys.readouterr()
    assert main(["predict", str(speaker_norm_run), str(emotion_folders), "-o", str(out), "--no-progress"]) == 0
    assert "no input has a speaker" in capsys.readouterr().err
    together = read_predictions(out)
    files = sorted(emotion_folders.rglob("*.wav"))
    assert sorted(together.ids) == sorted(f.stem for f in files) and len(files) == 6

    run = load_run(speaker_norm_run)
    for path in files:
        alone = predict_utterances(run, gather_inputs([path]), progress=False, report=lambda _: None)
        row = together.ids.index(path.stem)
        assert together.probs[row] == pytest.approx(alone.probs[0], abs=1e-4), path  # batching noise only

    capsys.readouterr()
    refused = tmp_path / "refused.csv"
    assert main(["predict", str(speaker_norm_run), str(emotion_folders), "-o", str(refused), "--no-progress",
                 "--speaker-from", "folder"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Angry" in err and "Happy" in err and "Sad" in err
    assert not refused.exists()


def test_filename_grouping_matches_the_same_speakers_given_in_a_manifest(tmp_path, speaker_norm_run, capsys):
    test = _test_files(speaker_norm_run)
    flat = tmp_path / "flat"
    flat.mkdir()
    rows = []
    for i, utt in enumerate(test):
        # two RAVDESS actors, 21 and 22, out of actor 05's files
        name = f"{utt.id[:-2]}{21 + i % 2}"
        shutil.copy(utt.audio, flat / f"{name}.wav")
        rows.append(Utterance(id=name, audio=str(flat / f"{name}.wav"), speaker=f"actor{21 + i % 2}"))
    manifest = write_manifest(tmp_path / "speakers.jsonl", rows)
    by_name, by_manifest, plain = tmp_path / "name.csv", tmp_path / "manifest.csv", tmp_path / "plain.csv"
    capsys.readouterr()
    assert main(["predict", str(speaker_norm_run), str(flat), "-o", str(by_name), "--no-progress",
                 "--speaker-from", "filename"]) == 0
    assert "2 speaker(s), 8-8 utterances each" in capsys.readouterr().err
    assert main(["predict", str(speaker_norm_run), str(manifest), "-o", str(by_manifest), "--no-progress"]) == 0
    assert "2 speaker(s), 8-8 utterances each" in capsys.readouterr().err
    assert main(["predict", str(speaker_norm_run), str(flat), "-o", str(plain), "--no-progress"]) == 0
    a, b, c = (read_predictions(p) for p in (by_name, by_manifest, plain))
    order = [b.ids.index(i) for i in a.ids]
    assert a.probs == pytest.approx(b.probs[order], abs=1e-5)
    assert np.abs(a.probs - c.probs[[c.ids.index(i) for i in a.ids]]).max() > 1e-3  # the grouping mattered


def test_manifest_speakers_named_as_emotions_switch_the_normalisation_off(tmp_path, speaker_norm_run, capsys):
    test = _test_files(speaker_norm_run)
    for utt in test:
        utt.speaker = utt.label.capitalize()  # one "speaker" per emotion
    manifest = write_manifest(tmp_path / "by-emotion.jsonl", test)
    out, plain = tmp_path / "out.csv", tmp_path / "plain.csv"
    capsys.readouterr()
    assert main(["predict", str(speaker_norm_run), str(manifest), "-o", str(out), "--no-progress"]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "named as emotions" in line]
    assert len(warning) == 1 and "Angry" in warning[0] and "normalisation is off" in warning[0]
    assert main(["predict", str(speaker_norm_run), str(manifest), "-o", str(plain), "--no-progress",
                 "--no-speaker-norm"]) == 0
    assert read_predictions(out).probs == pytest.approx(read_predictions(plain).probs, abs=1e-6)


def test_predict_reports_audio_cut_to_its_first_seconds(tmp_path, speaker_norm_run, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(speaker_norm_run, run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["audio"]["max_eval_seconds"] = 1.5
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    test = _test_files(speaker_norm_run)
    wave = np.concatenate([sf.read(u.audio, dtype="float32")[0] for u in test[:3]])  # 3 s
    long = tmp_path / "long.wav"
    sf.write(long, wave, 16000)
    short = tmp_path / "short.wav"
    shutil.copy(test[3].audio, short)
    capsys.readouterr()
    # --segment off: the behaviour before long-audio segmentation (tests/predict/test_long_audio.py has the default)
    assert main(["predict", str(run_dir), str(long), str(short), "-o", str(tmp_path / "p.csv"), "--no-progress",
                 "--segment", "off"]) == 0
    err = capsys.readouterr().err
    assert f"{long}: 3.0 s long; only the first 1.5 s are used" in err
    assert "short.wav" not in err
    assert len(read_predictions(tmp_path / "p.csv")) == 2


def test_predict_checks_its_inputs_before_loading_the_model(tmp_path, monkeypatch):
    import abhinaya.predict.inputs as inputs
    from abhinaya.recipes import write_yaml
    from abhinaya.runs import CONFIG_FILE, LABELS_FILE, load_recipe
    from abhinaya.labels import LabelSet

    run = tmp_path / "run"
    run.mkdir()
    recipes = Path(__file__).resolve().parents[2] / "recipes"
    write_yaml(run / CONFIG_FILE, load_recipe(recipes / "ravdess" / "s1.yaml"))
    LabelSet(["angry", "sad"]).save(run / LABELS_FILE)

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(inputs, "load_run", no_loading)
    with pytest.raises(inputs.InputError, match="missing.wav: no such file"):
        inputs.predict(run, [tmp_path / "missing.wav"])
