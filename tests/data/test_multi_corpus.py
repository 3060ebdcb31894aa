"""Several corpora in one model: joining (labels mapped, speakers qualified, splits per corpus), the classes each
corpus has, balanced sampling, the masked loss, per-corpus scoring in training and in ``abhinaya evaluate``."""

import json

import numpy as np
import pytest
import yaml

from abhinaya.cli import main
from abhinaya.data.audio import LengthBucketSampler
from abhinaya.data.multi_corpus import (
    class_masks,
    corpus_classes,
    load_corpora,
    restrict_to_corpus,
    union_label_set,
)
from abhinaya.data.utterances import experiment_label_set, load_experiment_utterances
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance, read_manifest
from abhinaya.recipes import ConfigError, DataConfig, from_dict
from abhinaya.runs import load_recipe
from abhinaya.testing.dummies import make_dummy_emodb, make_dummy_ravdess


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    ravdess = make_dummy_ravdess(root / "ravdess", actors=(1, 2, 3, 4))
    emodb = make_dummy_emodb(root / "emodb", speakers=("03", "08", "09", "10"))
    return ravdess, emodb


def data_config(ravdess, emodb, **extra):
    return from_dict(DataConfig, {
        "corpora": [
            {"name": "ravdess", "dev_speakers": ["03"], "test_speakers": ["04"], "label_map": {"calm": "neutral"}},
            {"name": "emodb", "dev_speakers": ["09"], "test_speakers": ["10"], "drop_labels": ["boredom"]},
        ],
        "roots": {"ravdess": str(ravdess), "emodb": str(emodb)},
        **extra,
    })


def test_corpora_are_joined_with_their_own_splits_labels_and_qualified_speakers(tmp_path, two_corpora):
    notes = []
    utterances = load_experiment_utterances(data_config(*two_corpora), tmp_path, log=notes.append)
    by_corpus = {name: [u for u in utterances if u.corpus == name] for name in ("ravdess", "emodb")}
    assert len(by_corpus["ravdess"]) == 4 * 16 and len(by_corpus["emodb"]) == 4 * 12  # boredom dropped
    assert {u.speaker for u in by_corpus["ravdess"]} == {"ravdess:01", "ravdess:02", "ravdess:03", "ravdess:04"}
    assert {u.speaker for u in by_corpus["emodb"]} == {"emodb:03", "emodb:08", "emodb:09", "emodb:10"}
    split = {u.speaker: u.split for u in utterances}
    assert split["ravdess:03"] == "dev" and split["ravdess:04"] == "test" and split["ravdess:01"] == "train"
    assert split["emodb:09"] == "dev" and split["emodb:10"] == "test" and split["emodb:08"] == "train"
    assert "calm" not in {u.label for u in by_corpus["ravdess"]}  # mapped to neutral
    assert "boredom" not in {u.label for u in utterances}
    assert (tmp_path / "data" / "ravdess.jsonl").is_file() and (tmp_path / "data" / "emodb.jsonl").is_file()
    assert any(n.startswith("ravdess: ") and "train" in n for n in notes)
    labels = experiment_label_set(data_config(*two_corpora), utterances)
    assert list(labels) == ["angry", "sad", "happy", "surprise", "fear", "disgust", "neutral"]  # canonical order
    classes = corpus_classes(utterances, labels, "train")
    assert "surprise" in classes["ravdess"] and "surprise" not in classes["emodb"]


def test_a_corpus_without_its_folder_names_the_option_to_set(tmp_path, two_corpora):
    config = from_dict(DataConfig, {"corpora": [{"name": "ravdess"}, {"name": "emodb"}],
                                    "roots": {"ravdess": str(two_corpora[0])}})
    with pytest.raises(ValueError, match="data.corpora emodb: no folder.*--set data.roots.emodb=DIR"):
        load_corpora(config, tmp_path)


def test_the_recipe_settings_are_checked():
    with pytest.raises(ConfigError, match="belong to each corpus"):
        from_dict(DataConfig, {"corpus": "ravdess", "corpora": [{"name": "ravdess"}]})
    with pytest.raises(ConfigError, match="roots names emodb"):
        from_dict(DataConfig, {"corpora": [{"name": "ravdess"}], "roots": {"emodb": "/x"}})
    with pytest.raises(ConfigError, match="used twice"):
        from_dict(DataConfig, {"corpora": [{"name": "a", "corpus": "ravdess"}, {"name": "a", "corpus": "emodb"}]})
    with pytest.raises(ConfigError, match="balance"):
        from_dict(DataConfig, {"balance": "speaker"})


def test_the_same_id_in_two_corpora_is_an_error(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text(json.dumps({"id": "x1", "audio": "x.wav", "label": "sad"}) + "\n")
    config = from_dict(DataConfig, {"corpora": [{"name": "a", "manifest": str(tmp_path / "a.jsonl")},
                                                {"name": "b", "manifest": str(tmp_path / "b.jsonl")}]})
    with pytest.raises(ValueError, match="'x1' is in both a and b"):
        load_corpora(config, tmp_path)


def test_masks_and_restriction_choose_among_a_corpus_s_own_classes():
    labels = LabelSet(["angry", "sad", "calm", "boredom"])
    rows = [Utterance(id="r", corpus="ravdess"), Utterance(id="e", corpus="emodb"), Utterance(id="x")]
    classes = {"ravdess": ["angry", "sad", "calm"], "emodb": ["angry", "sad", "boredom"]}
    masks = class_masks(rows, labels, classes)
    assert masks.tolist() == [[True, True, True, False], [True, True, False, True], [True, True, True, True]]
    probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.6, 0.1], [0.1, 0.2, 0.3, 0.4]])
    assert restrict_to_corpus(probs, rows, labels, classes) == ["calm", "sad", "boredom"]
    assert list(union_label_set([Utterance(id="a", label="boredom", split="train"),
                                 Utterance(id="b", label="angry", split="train")], "train")) == ["angry", "boredom"]


def test_balanced_sampling_gives_each_corpus_its_share_every_epoch():
    groups = np.array([0] * 90 + [1] * 10)
    sampler = LengthBucketSampler([100] * 100, 10, shuffle=True, seed=1, groups=groups, group_weights=[1.0, 1.0])
    for epoch in range(3):
        sampler.set_epoch(epoch)
        drawn = [i for batch in sampler for i in batch]
        assert len(drawn) == 100 and len(sampler) == 10
        assert sum(groups[i] == 1 for i in drawn) == 50  # the small corpus five times over
        assert len({i for i in drawn if groups[i] == 0}) == 50  # the large one subsampled without repetition
    sampler.set_epoch(0)
    again = [i for batch in sampler for i in batch]
    sampler.set_epoch(0)
    assert again == [i for batch in sampler for i in batch]  # seeded
    weighted = LengthBucketSampler([100] * 100, 10, shuffle=True, seed=1, groups=groups, group_weights=[3.0, 1.0])
    assert sum(groups[i] == 1 for batch in weighted for i in batch) == 25
    with pytest.raises(ValueError, match="group_weights"):
        LengthBucketSampler([1] * 100, 10, shuffle=True, groups=groups, group_weights=[1.0])


def write_multi_recipe(path, tiny_whisper_dir, ravdess, emodb, run_dir_name="run"):
    recipe = {
        "member": "s1",
        "data": {
            "corpora": [
                {"name": "ravdess", "dev_speakers": ["03"], "test_speakers": ["04"]},
                {"name": "emodb", "dev_speakers": ["09"], "test_speakers": ["10"]},
            ],
            "roots": {"ravdess": str(ravdess), "emodb": str(emodb)},
        },
        "audio": {"train_crop_seconds": None},
        "model": {"encoder": str(tiny_whisper_dir), "attention_dim": 8, "head_hidden": 16, "freeze_layers": 1},
        "train": {"epochs": 1, "batch_size": 8, "head_lr": 5e-3, "encoder_lr": 1e-3, "progress": False},
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_model_trains_on_two_corpora_and_is_scored_on_each(tmp_path, tiny_whisper_dir, two_corpora, capsys):
    from abhinaya.train import loop as training

    recipe = write_multi_recipe(tmp_path / "multi.yaml", tiny_whisper_dir, *two_corpora)
    notes = []
    training.train(load_recipe(recipe), tmp_path / "run", log=notes.append)
    text = "\n".join(notes)
    assert "ravdess: 8 classes; without boredom (masked out of the loss" in text
    assert "emodb: 7 classes; without surprise, calm (masked out of the loss" in text
    assert "(ravdess " in text and ", emodb " in text  # the epoch line gives each corpus's dev figure
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0.0 <= record["ravdess_macro_f1"] <= 1.0 and 0.0 <= record["emodb_macro_f1"] <= 1.0
    manifest = tmp_path / "run" / "data"
    # every dev utterance of EmoDB is given one of EmoDB's classes
    dev = {row.split(",")[0]: row.split(",")[1] for row in
           (tmp_path / "run" / "dev_predictions.csv").read_text().splitlines()[1:]}
    emodb_dev = [u.id for u in read_manifest(manifest / "emodb.jsonl") if u.speaker == "09"]
    assert emodb_dev and all(dev[i] not in ("calm", "surprise") for i in emodb_dev)

    # abhinaya predict on both corpora's test speakers, then evaluate per corpus
    joined = tmp_path / "joined.jsonl"
    utterances = load_experiment_utterances(load_recipe(recipe).data, tmp_path / "run", log=lambda _: None)
    joined.write_text("".join(json.dumps(u.to_dict()) + "\n" for u in utterances))
    out = tmp_path / "test.csv"
    assert main(["predict", str(tmp_path / "run"), str(joined), "--split", "test", "-o", str(out),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), str(joined), "--split", "test"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert set(report["per_corpus"]) == {"emodb", "ravdess"}
    assert report["per_corpus"]["emodb"]["labels"] == ["angry", "sad", "happy", "fear", "disgust", "neutral",
                                                       "boredom"]
    assert "emodb: macro-F1" in captured.err and "over its 7 classes" in captured.err


def test_the_masked_loss_ignores_the_classes_a_corpus_lacks():
    import torch

    from abhinaya.train.loop import Trainer

    trainer = Trainer.__new__(Trainer)
    trainer.train_masks = torch.tensor([[True, True, False], [True, True, True]])
    logits = torch.zeros(2, 3)
    masked = trainer._masked(logits, {"index": torch.tensor([0, 1])})
    assert masked[0, 2] == -1e4 and (masked[1] == 0).all() and (masked[0, :2] == 0).all()
    loss = torch.nn.functional.cross_entropy(masked, torch.tensor([0, 0]), reduction="none")
    assert loss[0] == pytest.approx(np.log(2), abs=1e-5) and loss[1] == pytest.approx(np.log(3), abs=1e-5)


def test_class_weights_follow_the_counts_an_epoch_draws():
    from abhinaya.train.loop import sampled_counts

    groups = np.array([0] * 8 + [1] * 2)
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])  # class 2 only in the small corpus
    counts = sampled_counts(groups, [1.0, 1.0], labels, 3)
    assert counts.tolist() == [2.5, 2.5, 5.0]  # half the epoch is the small corpus, all of it class 2
    assert counts.sum() == len(labels)


def test_each_corpus_takes_its_own_preparer_options(tmp_path, two_corpora):
    ravdess, _ = two_corpora
    rows = ["path,label,speaker"]
    for k, wav in enumerate(sorted(ravdess.glob("Actor_0[12]/*.wav"))[:8]):
        rows.append(f"{wav},{'frustrated' if k % 2 else 'happy'},s{k % 2}")
    listing = tmp_path / "mine.csv"
    listing.write_text("\n".join(rows) + "\n")

    def config(**prepare):
        return from_dict(DataConfig, {
            "corpora": [{"name": "mine", "corpus": "csv", "label_map": {"frustrated": "angry"}, "prepare": prepare}],
            "roots": {"mine": str(listing)},
        })

    # the user's own label is kept by the CSV preparer's custom_labels, then renamed by the corpus's label_map
    utterances = load_corpora(config(custom_labels=True), tmp_path / "a", log=lambda _: None)
    assert sorted({u.label for u in utterances}) == ["angry", "happy"] and len(utterances) == 8
    with pytest.raises(ValueError, match="prepare csv: unknown option.*custom_label\\b"):
        load_corpora(config(custom_label=True), tmp_path / "b", log=lambda _: None)
