"""Per-speaker normalisation of pooled vectors at prediction time (predict.speaker_norm)."""

import json

import pytest
import torch
import yaml

from abhinaya.cli import main
from abhinaya.corpora import speaker_from_file_name
from abhinaya.manifest import read_manifest
from abhinaya.predict.inputs import gather_inputs
from abhinaya.predict.speaker_norm import speaker_counts, speaker_shift
from abhinaya.predictions import read_predictions
from abhinaya.recipes import PredictConfig
from abhinaya.runs import load_recipe, load_run
from abhinaya.testing.dummies import make_dummy_ravdess
from abhinaya.train import loop as training


def test_without_shrinkage_every_speaker_mean_becomes_the_reference():
    torch.manual_seed(0)
    x = torch.randn(7, 4) + torch.tensor([5.0, -3.0, 0.0, 1.0])
    speakers = ["a", "a", "a", "b", "b", None, "b"]
    reference = torch.tensor([1.0, 2.0, 3.0, 4.0])
    out = speaker_shift(x, speakers, reference, prior=0.0)
    for name in ("a", "b"):
        rows = [i for i, s in enumerate(speakers) if s == name]
        assert torch.allclose(out[rows].mean(0), reference, atol=1e-5)
        # the differences between a speaker's utterances stay as they were
        assert torch.allclose(out[rows] - out[rows[0]], x[rows] - x[rows[0]], atol=1e-5)
    assert torch.equal(out[5], x[5])  # no speaker: unchanged
    assert speaker_counts(speakers) == {"a": 3, "b": 3}


def test_the_prior_shrinks_the_speaker_mean_toward_the_reference():
    x = torch.tensor([[11.0, 0.0]])
    reference = torch.tensor([0.0, 0.0])
    # one utterance, prior 10: the speaker mean counts 1 / 11, so the vector moves by 1 of its 11 units
    assert torch.allclose(speaker_shift(x, ["s"], reference, prior=10.0), torch.tensor([[10.0, 0.0]]))
    # a large prior leaves it nearly as it was
    assert torch.allclose(speaker_shift(x, ["s"], reference, prior=1e9), x, atol=1e-6)


def test_speaker_shift_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="speakers for"):
        speaker_shift(torch.zeros(3, 2), ["a"], torch.zeros(2), 0.0)
    with pytest.raises(ValueError, match="reference"):
        speaker_shift(torch.zeros(3, 2), ["a"] * 3, torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match="prior"):
        PredictConfig(speaker_norm_prior=-1)


def test_audio_speakers_come_from_the_corpus_naming_else_the_folder(tmp_path):
    corpus = make_dummy_ravdess(tmp_path / "ravdess", actors=(1, 2), statements=("01",))
    utterances = gather_inputs([corpus])
    assert {u.speaker for u in utterances} == {str(corpus / "Actor_01"), str(corpus / "Actor_02")}
    single = next((corpus / "Actor_01").iterdir())
    assert gather_inputs([single])[0].speaker is None
    # a run trained on RAVDESS reads the actor from the file name, however the files are given
    assert {u.speaker for u in gather_inputs([corpus], corpus="ravdess")} == {"01", "02"}
    assert gather_inputs([single], corpus="ravdess")[0].speaker == "01"
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "03-01-05-01-02-01-21.wav").write_bytes(single.read_bytes())
    (flat / "my_recording.wav").write_bytes(single.read_bytes())
    assert {u.id: u.speaker for u in gather_inputs([flat], corpus="ravdess")} == {
        "03-01-05-01-02-01-21": "21", "my_recording": str(flat)
    }
    assert {u.speaker for u in gather_inputs([flat], corpus="emodb")} == {str(flat)}
    assert speaker_from_file_name("emodb", "03a01Fa") == "03"
    assert speaker_from_file_name("msp-podcast", "MSP-PODCAST_0001_0008") is None


def _recipe(path, tiny_whisper_dir, root, **model):
    recipe = {
        "member": "s1",
        "data": {"corpus": "ravdess", "root": str(root), "dev_speakers": ["04"], "test_speakers": ["05"]},
        "audio": {"train_crop_seconds": 0.5},
        "model": {"encoder": str(tiny_whisper_dir), "attention_dim": 8, "head_hidden": 16, "freeze_layers": 1,
                  "head_norm": "running", **model},
        "train": {"epochs": 1, "batch_size": 8, "head_lr": 5e-3, "encoder_lr": 1e-3, "progress": False},
        "predict": {"speaker_norm": True, "speaker_norm_prior": 2.0},
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_dummy_ravdess(tmp_path_factory.mktemp("corpus") / "ravdess", actors=(1, 2, 3, 4, 5))


def test_predict_moves_each_speaker_to_the_training_mean(tmp_path, tiny_whisper_dir, corpus, capsys):
    recipe = _recipe(tmp_path / "s1.yaml", tiny_whisper_dir, corpus)
    run_dir = tmp_path / "run"
    training.train(load_recipe(recipe), run_dir, log=lambda _: None)
    # the saved config carries the setting, so predict follows it without being told
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["predict"]["speaker_norm"] is True

    manifest = run_dir / "data" / "splits.jsonl"
    test = [u for u in read_manifest(manifest) if u.split == "test"]
    # make two speakers out of actor 05 so that the grouping matters
    for i, utt in enumerate(test):
        utt.speaker = "x" if i % 2 else "y"
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps(u.to_dict()) + "\n" for u in test))

    normed, plain = tmp_path / "normed.csv", tmp_path / "plain.csv"
    capsys.readouterr()
    assert main(["predict", str(run_dir), str(mixed), "-o", str(normed), "--no-progress"]) == 0
    assert "2 speaker(s), 8-8 utterances each" in capsys.readouterr().err
    assert main(["predict", str(run_dir), str(mixed), "-o", str(plain), "--no-progress", "--no-speaker-norm"]) == 0

    # the same figures by hand: pooled vectors, shrunk speaker means, head
    run = load_run(run_dir)
    model = run.model.eval()
    dataset = run.member.dataset(test, None, train=False)
    with torch.inference_mode():
        pooled = torch.stack([model.embed(item["waveform"][None], torch.tensor([len(item["waveform"])]))[0]
                              for item in (dataset[i] for i in range(len(dataset)))])
        reference = model.head_norm.running_mean
        expected = torch.empty_like(pooled)
        for name in ("x", "y"):
            rows = [i for i, u in enumerate(test) if u.speaker == name]
            shrunk = (len(rows) * pooled[rows].mean(0) + 2.0 * reference) / (len(rows) + 2.0)
            expected[rows] = pooled[rows] - shrunk + reference
        by_hand = torch.softmax(model.classify(expected), -1).numpy()
        unshifted = torch.softmax(model.classify(pooled), -1).numpy()
    got, got_plain = read_predictions(normed), read_predictions(plain)
    assert got.ids == [u.id for u in test]
    assert got.probs == pytest.approx(by_hand, abs=1e-4)
    assert got_plain.probs == pytest.approx(unshifted, abs=1e-4)
    assert abs(got.probs - got_plain.probs).max() > 1e-3  # the normalisation did change something

    # a file given by itself, with no speaker in its name: said so, and predicted as without the normalisation
    lone = tmp_path / "lone.wav"
    lone.write_bytes(open(test[0].audio, "rb").read())
    capsys.readouterr()
    assert main(["predict", str(run_dir), str(lone), "-o", str(tmp_path / "lone.csv"), "--no-progress"]) == 0
    assert "no input has a speaker" in capsys.readouterr().err
    lone_plain = tmp_path / "lone-plain.csv"
    assert main(["predict", str(run_dir), str(lone), "-o", str(lone_plain), "--no-progress", "--no-speaker-norm"]) == 0
    assert read_predictions(tmp_path / "lone.csv").probs == pytest.approx(read_predictions(lone_plain).probs, abs=1e-5)


def test_speaker_norm_without_a_training_mean_is_a_clear_error(tmp_path, tiny_whisper_dir, corpus):
    recipe = _recipe(tmp_path / "s1.yaml", tiny_whisper_dir, corpus, head_norm=None)
    with pytest.raises(training.TrainingError, match="head_norm"):
        training.train(load_recipe(recipe), tmp_path / "run", log=lambda _: None)
