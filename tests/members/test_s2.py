"""S2 and ST1 (the speech LLM) through the shared loop: tiny random Whisper and Llama on a miniature RAVDESS."""

import json

import numpy as np
import pytest
import yaml

from abhinaya.cli import main
from abhinaya.manifest import read_manifest, write_manifest
from abhinaya.predictions import read_predictions
from abhinaya.runs import load_run, recipe_from_dict
from abhinaya.testing.dummies import make_dummy_ravdess
from abhinaya.weights.checkpoint import load_tensors


@pytest.fixture(scope="module")
def ravdess(tmp_path_factory):
    return make_dummy_ravdess(tmp_path_factory.mktemp("corpus") / "ravdess", actors=(1, 2, 19, 20))


def write_recipe(path, whisper, llm, member="s2", data=None, **model):
    recipe = {
        "member": member,
        "data": data,
        "model": {
            "whisper": str(whisper),
            "llm": str(llm),
            "qformer": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32},
            "attention_dim": 8,
            "head_hidden": 16,
            "train_crop_seconds": 1.0,
            "feature_cache": str(path.parent / "features"),
            **model,
        },
        "train": {"epochs": 2, "batch_size": 8, "encoder_lr": 1e-3, "head_lr": 5e-3, "progress": False},
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_defaults_follow_the_paper():
    s2 = recipe_from_dict({"member": "s2"})
    st1 = recipe_from_dict({"member": "st1"})
    assert s2.loss.name == "weighted_focal" and st1.loss.name == "vs"
    assert (s2.model.lora_r, s2.model.lora_alpha, s2.model.lora_dropout) == (8, 32, 0.1)
    assert (s2.model.qformer.window, s2.model.qformer.stride, s2.model.qformer.num_layers) == (17, 17, 2)
    assert "<SpeechHere>" in s2.prompt.template and "{text}" not in s2.prompt.template
    assert "{text}" in st1.prompt.template and st1.prompt.max_train_words == 50
    assert s2.audio.train_crop_seconds is None  # the crop is taken from the cached features


def test_s2_trains_caches_the_encoder_and_predicts(tmp_path, tiny_whisper_dir, tiny_llama_dir, ravdess, capsys):
    run = tmp_path / "run"
    data = {"corpus": "ravdess", "root": str(ravdess), "dev_speakers": ["19", "20"]}
    recipe = write_recipe(tmp_path / "s2.yaml", tiny_whisper_dir, tiny_llama_dir, data=data)
    assert main(["train", str(recipe), "-o", str(run)]) == 0
    state = load_tensors(run / "model.safetensors")
    assert state and all(
        "lora_" in k or k.startswith(("ln_speech.", "qformer.", "proj.", "pooling.", "head.")) for k in state
    )
    loaded = load_run(run)
    trained = {n for n, p in loaded.model.named_parameters() if p.requires_grad}
    assert set(state) == trained | {"head.norm.running_mean", "head.norm.running_var", "head.norm.num_batches_tracked"}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["dev_utterances"] == 32
    # Whisper ran once per utterance (train + dev); both epochs and the prediction reused the cache.
    assert len(list((tmp_path / "features").rglob("*.npy"))) == 64

    out = tmp_path / "pred.csv"
    assert main(["predict", str(run), str(run / "data" / "splits.jsonl"), "--split", "dev", "-o", str(out),
                 "--no-progress"]) == 0
    table = read_predictions(out)
    assert len(table.ids) == 32
    # The reloaded run predicts what the trained model predicted on dev (nothing learnt was left out of the run).
    dev = read_predictions(run / "dev_predictions.csv")
    order = [table.ids.index(i) for i in dev.ids]
    assert np.allclose(np.asarray(table.probs)[order], np.asarray(dev.probs), atol=1e-4)

    # Per-speaker normalisation (predict.speaker_norm): the pooled vector and the head, split, give the same
    # logits as the whole model; normalised, each dev actor is moved to the training mean.
    import torch

    from abhinaya.predict.speaker_norm import speaker_shift

    dev_utts = [u for u in read_manifest(run / "data" / "splits.jsonl") if u.split == "dev"]
    dataset = loaded.member.dataset(dev_utts, None, train=False)
    batch = loaded.member.collate([dataset[i] for i in range(4)])
    loaded.model.eval()
    with torch.inference_mode():
        pooled = loaded.member.embed(loaded.model, batch)
        assert torch.allclose(loaded.member.classify(loaded.model, pooled), loaded.member.logits(loaded.model, batch),
                              atol=1e-5)
    normed = tmp_path / "normed.csv"
    capsys.readouterr()
    assert main(["predict", str(run), str(run / "data" / "splits.jsonl"), "--split", "dev", "-o", str(normed),
                 "--no-progress", "--speaker-norm"]) == 0
    assert "2 speaker(s), 16-16 utterances each" in capsys.readouterr().err
    got = read_predictions(normed)
    # The tiny S2's pooled vectors barely differ between utterances, so the shift is small here; that the shift
    # changes predictions is shown with a tiny S1 in tests/predict/.
    assert got.ids == table.ids
    with torch.inference_mode():
        from abhinaya.predict.engine import predict_pooled

        _, everything = predict_pooled(loaded.member, loaded.model, dataset, 8, progress=False)
        # the speakers move to the run's reference mean (its clean training utterances), saved at training
        assert loaded.reference_mean is not None
        shifted = speaker_shift(torch.from_numpy(everything), [u.speaker for u in dataset.utterances],
                                loaded.reference_mean, 10.0)
        by_hand = torch.softmax(loaded.member.classify(loaded.model, shifted), -1).numpy()
    assert np.allclose(np.asarray(got.probs), by_hand, atol=1e-4)


def test_s2_generative_output_trains_and_predicts(tmp_path, tiny_whisper_dir, tiny_llama_dir, ravdess, capsys):
    run = tmp_path / "run"
    data = {"corpus": "ravdess", "root": str(ravdess), "dev_speakers": ["19", "20"]}
    recipe = write_recipe(tmp_path / "s2.yaml", tiny_whisper_dir, tiny_llama_dir, data=data, output="generative")
    recipe_data = yaml.safe_load(recipe.read_text())
    recipe_data["train"]["epochs"] = 1
    recipe.write_text(yaml.safe_dump(recipe_data))
    assert main(["train", str(recipe), "-o", str(run)]) == 0
    state = load_tensors(run / "model.safetensors")
    assert not any(k.startswith(("pooling.", "head.")) for k in state)  # the LM's own head scores the names
    out = tmp_path / "pred.csv"
    assert main(["predict", str(run), str(run / "data" / "splits.jsonl"), "--split", "dev", "-o", str(out),
                 "--no-progress"]) == 0
    table = read_predictions(out)
    assert len(table.ids) == 32
    # no pooled vector to normalise: a clear error, not a traceback
    assert main(["predict", str(run), str(run / "data" / "splits.jsonl"), "--split", "dev", "-o", str(out),
                 "--no-progress", "--speaker-norm"]) == 1
    err = capsys.readouterr().err
    assert "speaker_norm" in err and "output 'generative'" in err


def test_st1_needs_transcripts_and_leaves_long_ones_out_of_training(
    tmp_path, tiny_whisper_dir, tiny_llama_dir, ravdess, capsys
):
    # A manifest with transcripts, as `abhinaya transcribe` writes it.
    assert main(["prepare", "ravdess", str(ravdess), "-o", str(tmp_path / "m.jsonl")]) == 0
    rows = read_manifest(tmp_path / "m.jsonl")
    for u in rows:
        u.text = "kids are talking by the door"
    train_rows = [u for u in rows if u.speaker not in ("19", "20")]
    train_rows[0].text = None
    train_rows[1].text = "word " * 60
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    run = tmp_path / "run"
    data = {"corpus": "ravdess", "manifest": str(manifest), "dev_speakers": ["19", "20"]}
    recipe = write_recipe(tmp_path / "st1.yaml", tiny_whisper_dir, tiny_llama_dir, member="st1", data=data)
    capsys.readouterr()
    assert main(["train", str(recipe), "-o", str(run)]) == 0
    output = capsys.readouterr()
    text = output.out + output.err
    assert f"{train_rows[0].id}: no transcript" in text
    assert f"{train_rows[1].id}: transcript of 60 words exceeds prompt.max_train_words=50" in text
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_utterances"] == 30


def test_st1_refuses_a_prompt_without_the_transcript():
    from abhinaya.members.st1 import ST1Member

    recipe = recipe_from_dict({"member": "st1", "prompt": {"template": "USER: <Speech><SpeechHere></Speech> hi"}})
    with pytest.raises(ValueError, match="text"):
        ST1Member(recipe)


def test_prompted_dataset_reports_the_audio_datasets_notes():
    # predict reports audio cut to its first seconds through ``dataset.notes``; S2/ST1's dataset wraps an audio one.
    from types import SimpleNamespace

    from abhinaya.members.s2 import PromptedAudioDataset

    dataset = object.__new__(PromptedAudioDataset)
    dataset.audio = SimpleNamespace(notes=["a.wav: 42.0 s long; only the first 30.0 s are used"])
    assert dataset.notes == ["a.wav: 42.0 s long; only the first 30.0 s are used"]
