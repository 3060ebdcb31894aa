"""Per-speaker normalisation of pooled vectors at prediction time (predict.speaker_norm)."""

import json

import pytest
import torch
import yaml

from abhinaya.cli import main
from abhinaya.corpora import speaker_from_file_name
from abhinaya.manifest import read_manifest
from abhinaya.predict.speaker_norm import speaker_counts, speaker_shift
from abhinaya.predictions import read_predictions
from abhinaya.recipes import PredictConfig
from abhinaya.runs import load_recipe, load_run
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


def test_speaker_counts_ignore_utterances_without_a_speaker():
    assert speaker_counts([None, "a", None]) == {"a": 1}
    assert speaker_from_file_name("emodb", "03a01Fa") == "03"
    assert speaker_from_file_name("msp-podcast", "MSP-PODCAST_0001_0008") is None


def _by_hand(run, utterances, speakers, reference, prior):
    """Probabilities computed item by item: pooled vectors, shrunk speaker means moved to ``reference``, head."""
    member, model = run.member, run.model.eval()
    dataset = member.dataset(utterances, None, train=False)
    with torch.inference_mode():
        pooled = torch.cat([member.embed(model, member.collate([dataset[i]])) for i in range(len(dataset))])
        shifted = pooled.clone()
        for name in sorted(set(speakers)):
            rows = [i for i, s in enumerate(speakers) if s == name]
            shrunk = (len(rows) * pooled[rows].mean(0) + prior * reference) / (len(rows) + prior)
            shifted[rows] = pooled[rows] - shrunk + reference
        return (torch.softmax(member.classify(model, shifted), -1).numpy(),
                torch.softmax(member.classify(model, pooled), -1).numpy())


def test_training_saves_the_mean_of_the_clean_training_vectors(speaker_norm_run):
    from abhinaya.predict.engine import predict_pooled
    from abhinaya.runs import REFERENCE_MEAN_FILE

    run_dir = speaker_norm_run
    assert (run_dir / REFERENCE_MEAN_FILE).is_file()
    run = load_run(run_dir)
    train = [u for u in read_manifest(run_dir / "data" / "splits.jsonl") if u.split == "train"]
    _, pooled = predict_pooled(run.member, run.model, run.member.dataset(train, None, train=False), 4, progress=False)
    assert run.reference_mean.shape == (pooled.shape[1],)
    assert torch.allclose(run.reference_mean, torch.from_numpy(pooled).mean(0), atol=1e-5)
    # not the head's running mean (an average over augmented training crops)
    assert not torch.allclose(run.reference_mean, run.member.pooled_mean(run.model), atol=1e-4)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["reference_mean_utterances"] == len(train) == 48
    assert summary["reference_mean_seconds"] >= 0
    assert "clean training utterances" in (run_dir.parent / "train.log").read_text()

    # the run folder's dev predictions are made with the reference, as predict makes them
    dev = [u for u in read_manifest(run_dir / "data" / "splits.jsonl") if u.split == "dev"]
    by_hand, _ = _by_hand(run, dev, [u.speaker for u in dev], run.reference_mean, 2.0)
    saved = read_predictions(run_dir / "dev_predictions.csv")
    order = [saved.ids.index(u.id) for u in dev]
    assert saved.probs[order] == pytest.approx(by_hand, abs=1e-4)


def test_predict_moves_each_speaker_to_the_reference_mean(tmp_path, speaker_norm_run, capsys):
    run_dir = speaker_norm_run
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
    by_hand, unshifted = _by_hand(run, test, [u.speaker for u in test], run.reference_mean, 2.0)
    got, got_plain = read_predictions(normed), read_predictions(plain)
    assert got.ids == [u.id for u in test]
    assert got.probs == pytest.approx(by_hand, abs=1e-4)
    assert got_plain.probs == pytest.approx(unshifted, abs=1e-4)
    assert abs(got.probs - got_plain.probs).max() > 1e-3  # the normalisation did change something

    # a file given by itself has no speaker: said so, and predicted as without the normalisation
    lone = tmp_path / "lone.wav"
    lone.write_bytes(open(test[0].audio, "rb").read())
    capsys.readouterr()
    assert main(["predict", str(run_dir), str(lone), "-o", str(tmp_path / "lone.csv"), "--no-progress"]) == 0
    assert "no input has a speaker" in capsys.readouterr().err
    lone_plain = tmp_path / "lone-plain.csv"
    assert main(["predict", str(run_dir), str(lone), "-o", str(lone_plain), "--no-progress", "--no-speaker-norm"]) == 0
    assert read_predictions(tmp_path / "lone.csv").probs == pytest.approx(read_predictions(lone_plain).probs, abs=1e-5)


def test_a_run_without_a_reference_mean_falls_back_to_the_running_mean(tmp_path, speaker_norm_run, capsys):
    import shutil

    from abhinaya.runs import REFERENCE_MEAN_FILE

    old = tmp_path / "old-run"
    shutil.copytree(speaker_norm_run, old)
    (old / REFERENCE_MEAN_FILE).unlink()
    run = load_run(old)
    assert run.reference_mean is None
    test = [u for u in read_manifest(old / "data" / "splits.jsonl") if u.split == "test"]
    capsys.readouterr()
    assert main(["predict", str(old), str(old / "data" / "splits.jsonl"), "--split", "test",
                 "-o", str(tmp_path / "p.csv"), "--no-progress"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if REFERENCE_MEAN_FILE in line]
    assert len(notes) == 1 and "running mean" in notes[0]
    by_hand, _ = _by_hand(run, test, [u.speaker for u in test], run.member.pooled_mean(run.model), 2.0)
    assert read_predictions(tmp_path / "p.csv").probs == pytest.approx(by_hand, abs=1e-4)


def test_classify_pooled_needs_its_reference(speaker_norm_run):
    from abhinaya.predict.engine import classify_pooled

    run = load_run(speaker_norm_run)
    pooled = torch.zeros(2, run.reference_mean.shape[0]).numpy()
    with pytest.raises(ValueError, match="reference"):
        classify_pooled(run.member, run.model, pooled, ["a", "a"], PredictConfig(speaker_norm=True), None)
    config = PredictConfig(speaker_norm=True, speaker_norm_prior=0.0)
    # prior 0: the speaker's mean becomes the reference, the two rows keep their difference
    probs = classify_pooled(run.member, run.model, pooled + [[0.0], [1.0]], ["a", "a"], config, run.reference_mean)
    assert probs.shape == (2, len(run.label_set)) and probs[0] != pytest.approx(probs[1])


def test_speaker_norm_without_a_training_mean_is_a_clear_error(tmp_path, tiny_whisper_dir, corpus, speaker_norm_recipe):
    recipe = speaker_norm_recipe(tmp_path / "s1.yaml", tiny_whisper_dir, corpus, head_norm=None)
    with pytest.raises(training.TrainingError, match="head_norm"):
        training.train(load_recipe(recipe), tmp_path / "run", log=lambda _: None)
