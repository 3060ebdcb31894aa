"""The egemaps member: openSMILE eGeMAPS functionals (data/egemaps.py), the acoustic classifier (models/acoustic.py),
training in the shared loop and prediction from the run folder. Tests that extract features skip where opensmile is
not installed."""

import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from abhinaya.audio import AudioError
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance
from abhinaya.members import get_member
from abhinaya.models.acoustic import AcousticClassifier, AcousticClassifierConfig
from abhinaya.recipes import ConfigError
from abhinaya.runs import recipe_from_dict

RATE = 16_000


@pytest.fixture
def opensmile():
    return pytest.importorskip("opensmile", reason="opensmile is not installed: pip install 'abhinaya[acoustic]'")


def write_tone(path, hz=220.0, seconds=1.0, rate=RATE):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * hz * t) * (1.0 + 0.3 * np.sin(2 * np.pi * 3.0 * t))
    sf.write(str(path), wave.astype(np.float32), rate)
    return path


# ------------------------------------------------------------------------------------------------ the dataset
def test_dataset_gives_88_finite_functionals_of_a_tone(opensmile, tmp_path):
    from abhinaya.data.egemaps import EgemapsDataset, collate_features

    tone = write_tone(tmp_path / "tone.wav", seconds=1.5)
    low = write_tone(tmp_path / "low.wav", hz=110.0)
    data = EgemapsDataset([Utterance("tone", audio=str(tone), label="happy"), str(low)], LabelSet(["happy", "sad"]))
    item = data[0]
    assert item["id"] == "tone" and item["label"] == 0 and data[1]["label"] == -1 and data[1]["id"] == "low"
    assert item["features"].dtype == torch.float32 and item["features"].shape == (88,)
    assert torch.isfinite(item["features"]).all()
    assert not torch.equal(item["features"], data[1]["features"])  # the pitch is among the functionals
    batch = collate_features([data[0], data[1]])
    assert batch["features"].shape == (2, 88) and batch["labels"].tolist() == [0, -1] and batch["ids"] == ["tone", "low"]
    assert data.lengths == [1, 1] and data.notes == [] and data.errors == []


def test_features_are_computed_once_and_cached_on_disk(opensmile, tmp_path, monkeypatch):
    from abhinaya.data import egemaps

    tone = write_tone(tmp_path / "tone.wav")
    calls = []
    real = egemaps.load_audio
    monkeypatch.setattr(egemaps, "load_audio", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    first = egemaps.EgemapsDataset([str(tone)], cache_dir=tmp_path / "cache")
    vector = first[0]["features"]
    first[0]
    assert len(calls) == 1  # in memory for the dataset's lifetime
    again = egemaps.EgemapsDataset([str(tone)], cache_dir=tmp_path / "cache")
    assert torch.equal(again[0]["features"], vector) and len(calls) == 1 and again._disk.hits == 1  # from disk
    write_tone(tone, hz=330.0)  # the file changes (size or mtime): a new entry, computed again
    changed = egemaps.EgemapsDataset([str(tone)], cache_dir=tmp_path / "cache")
    assert not torch.equal(changed[0]["features"], vector) and len(calls) == 2


def test_an_unreadable_file_is_named(opensmile, tmp_path):
    from abhinaya.data.egemaps import EgemapsDataset

    good = write_tone(tmp_path / "good.wav")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="broken.wav"):
        EgemapsDataset([str(good), str(broken)])[1]
    with pytest.raises(AudioError, match="broken.wav"):
        EgemapsDataset([str(good), str(broken)]).scan()
    skipping = EgemapsDataset([str(good), str(broken), Utterance("no-audio")], on_error="skip")
    assert skipping.ids == ["good"] and len(skipping) == 1
    assert any(str(broken) in e for e in skipping.errors) and any(e.startswith("no-audio") for e in skipping.errors)


def test_audio_too_short_for_the_functionals_is_an_error(opensmile, tmp_path):
    from abhinaya.data.egemaps import EgemapsDataset

    short = write_tone(tmp_path / "short.wav", seconds=0.05)
    with pytest.raises(AudioError, match="short.wav"):
        EgemapsDataset([str(short)], min_seconds=0.0)[0]


def test_without_opensmile_the_error_says_how_to_install_it(monkeypatch):
    from abhinaya.data.egemaps import EgemapsDataset

    monkeypatch.setitem(sys.modules, "opensmile", None)  # import opensmile now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'abhinaya\[acoustic\]'"):
        EgemapsDataset(["x.wav"])


# ------------------------------------------------------------------------------------------------ the model
@pytest.mark.parametrize("hidden", [0, 16])
def test_classifier_logits_and_the_pooled_path_agree(hidden):
    torch.manual_seed(0)
    model = AcousticClassifier(AcousticClassifierConfig(num_features=88, head_hidden=hidden, num_labels=4))
    assert isinstance(model.hidden, torch.nn.Identity) == (hidden == 0)
    x = torch.randn(5, 88) * torch.logspace(-3, 2, 88)  # functionals differ in scale by orders of magnitude
    model.train()
    model(x)  # one training batch updates the running statistics
    model.eval()
    logits = model(x)
    assert logits.shape == (5, 4)
    torch.testing.assert_close(model.classify(model.embed(x)), logits)
    torch.testing.assert_close(model.pooled_mean(), x.mean(dim=0))
    names = {g["name"] for g in model.param_groups(1e-5, 1e-2, 0.01)}
    assert names == {"head", "head_no_decay"}


def test_classifier_config_checks():
    with pytest.raises(ValueError, match="num_features is not set"):
        AcousticClassifier(AcousticClassifierConfig())
    with pytest.raises(ValueError, match="head_norm"):
        AcousticClassifierConfig(head_norm="group")
    assert AcousticClassifier(AcousticClassifierConfig(num_features=3, head_norm=None)).pooled_mean() is None


# ------------------------------------------------------------------------------------------------ the member
def test_member_resolves_the_feature_count_and_refuses_a_wrong_one():
    member = get_member("egemaps")(recipe_from_dict({"member": "egemaps", "model": {"feature_set": "GeMAPSv01b"}}))
    model, resolved = member.build(LabelSet(["angry", "happy", "sad"]), pretrained=True)
    assert resolved.model.num_features == 62 and resolved.model.num_labels == 3
    assert member.recipe.model.num_features is None
    assert model(torch.zeros(2, 62)).shape == (2, 3)
    with pytest.raises(ConfigError, match="num_features 88 does not match"):
        recipe_from_dict({"member": "egemaps", "model": {"feature_set": "GeMAPSv01b", "num_features": 88}})
    with pytest.raises(ConfigError, match="feature_set"):
        recipe_from_dict({"member": "egemaps", "model": {"feature_set": "ComParE_2016"}})


def test_member_trains_and_predicts_through_the_run_folder(opensmile, tmp_path, monkeypatch):
    from abhinaya.predict.inputs import predict
    from abhinaya.testing.dummies import make_dummy_ravdess
    from abhinaya.train.loop import train

    monkeypatch.setenv("ABHINAYA_FEATURE_CACHE", str(tmp_path / "features"))
    root = make_dummy_ravdess(tmp_path / "ravdess", actors=(1, 2, 3), seconds=0.5)
    recipe = recipe_from_dict({
        "member": "egemaps",
        "data": {"corpus": "ravdess", "root": str(root), "dev_speakers": ["03"]},
        "model": {"head_hidden": 8},
        "train": {"epochs": 2, "batch_size": 8, "progress": False},
        "predict": {"speaker_norm": True},
    })
    run = tmp_path / "run"
    summary = train(recipe, run, log=lambda _: None)
    assert summary["epochs_run"] == 2 and summary["train_utterances"] == 32 and summary["dev_utterances"] == 16
    for name in ("config.yaml", "labels.json", "model.safetensors", "dev_predictions.csv", "reference_mean.safetensors"):
        assert (run / name).is_file(), name
    assert any((tmp_path / "features").rglob("*.npy"))  # model.feature_cache: auto

    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF")
    messages = []
    table = predict(run, [run / "data" / "manifest.jsonl", broken], progress=False, report=messages.append)
    assert len(table.ids) == 48 and broken.stem not in table.ids
    assert any(str(broken) in m for m in messages)
    probs = np.asarray(table.probs)
    assert probs.shape == (48, 8) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
