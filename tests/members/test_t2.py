"""T2 through the shared loop: a tiny random Llama on a miniature MELD."""

import json

import pytest
import yaml

from abhinaya.cli import main
from abhinaya.manifest import read_manifest, write_manifest
from abhinaya.predictions import read_predictions
from abhinaya.runs import load_recipe, load_run
from abhinaya.testing.dummies import make_dummy_meld
from abhinaya.weights.checkpoint import load_tensors


@pytest.fixture(scope="module")
def meld(tmp_path_factory):
    return make_dummy_meld(tmp_path_factory.mktemp("corpus") / "meld", train_dialogues=8, dev_dialogues=4)


def write_recipe(path, llm, root, **model):
    recipe = {
        "member": "t2",
        "data": {"corpus": "meld", "root": str(root)},
        "text": {"max_tokens": 16},
        "model": {"llm": str(llm), "lora_layers": 2, "attention_dim": 8, "head_hidden": 16, **model},
        "train": {"epochs": 2, "batch_size": 8, "encoder_lr": 1e-3, "head_lr": 5e-3, "progress": False},
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_t2_defaults_follow_the_paper():
    recipe = load_recipe_from_dict({"member": "t2"})
    assert recipe.loss.name == "vs" and recipe.loss.vs_class_weights
    assert (recipe.model.lora_r, recipe.model.lora_alpha, recipe.model.lora_dropout) == (8, 32, 0.1)
    assert recipe.model.pooling == "attentive"


def load_recipe_from_dict(data):
    from abhinaya.runs import recipe_from_dict

    return recipe_from_dict(data)


def test_train_saves_only_what_is_trained_and_predicts(tmp_path, tiny_llama_dir, meld, capsys):
    run = tmp_path / "run"
    recipe = write_recipe(tmp_path / "t2.yaml", tiny_llama_dir, meld)
    assert main(["train", str(recipe), "-o", str(run)]) == 0
    state = load_tensors(run / "model.safetensors")
    assert state and all("lora_" in k or k.startswith(("pooling.", "head.")) for k in state)
    loaded = load_run(run)
    trainable = {n for n, p in loaded.model.named_parameters() if p.requires_grad}
    assert set(state) == trainable  # every trained key saved, and nothing else
    assert (run / "checkpoint" / "model.safetensors").stat().st_size < 1_000_000  # no frozen LLM copy
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == 2

    # Text-only manifest: a row without a transcript is reported and skipped; the others are predicted.
    rows = [u for u in read_manifest(run / "data" / "splits.jsonl") if u.split == "dev"][:6]
    rows[2].text = None
    manifest = write_manifest(tmp_path / "dev.jsonl", rows)
    out = tmp_path / "pred.csv"
    capsys.readouterr()
    assert main(["predict", str(run), str(manifest), "-o", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert rows[2].id in captured.out + captured.err and "no transcript" in captured.out + captured.err
    table = read_predictions(out)
    assert sorted(table.ids) == sorted(u.id for i, u in enumerate(rows) if i != 2)


def test_resume_continues_from_the_trained_part(tmp_path, tiny_llama_dir, meld, monkeypatch):
    from abhinaya.train import loop as training
    from abhinaya.train import selection

    recipe_path = write_recipe(tmp_path / "t2.yaml", tiny_llama_dir, meld)
    full = training.train(load_recipe(recipe_path), tmp_path / "full", log=lambda _: None)
    real = selection.predict_with_dimensions
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # dev evaluation of epoch 2: the run dies here
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(selection, "predict_with_dimensions", interrupted)
    with pytest.raises(KeyboardInterrupt):
        training.train(load_recipe(recipe_path), tmp_path / "cut", log=lambda _: None)
    monkeypatch.setattr(selection, "predict_with_dimensions", real)
    resumed = training.train(load_recipe(recipe_path), tmp_path / "cut", resume=True, log=lambda _: None)
    assert resumed["epochs_run"] == full["epochs_run"] == 2
    a = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in b] == [1, 2]
    assert [r["train_loss"] for r in a] == pytest.approx([r["train_loss"] for r in b], rel=1e-5)
    assert [r["macro_f1"] for r in a] == pytest.approx([r["macro_f1"] for r in b])


def test_context_turns_reach_the_model_at_training_and_prediction(tmp_path, tiny_llama_dir, meld):
    """With ``text.context_turns`` the earlier turns the MELD preparer records are read before each utterance, in
    training and in ``predict``; a manifest's context changes the prediction, as it should."""
    import numpy as np

    run = tmp_path / "run"
    recipe = write_recipe(tmp_path / "t2.yaml", tiny_llama_dir, meld)
    data = yaml.safe_load(recipe.read_text())
    data["text"]["context_turns"] = 2
    recipe.write_text(yaml.safe_dump(data))
    assert main(["train", str(recipe), "-o", str(run)]) == 0
    assert load_run(run).recipe.text.context_turns == 2
    rows = [u for u in read_manifest(run / "data" / "splits.jsonl") if u.split == "dev" and u.context]
    assert rows, "the preparer records earlier turns"
    with_context = tmp_path / "with.jsonl"
    write_manifest(with_context, rows)
    for u in rows:
        u.context = None
    without = write_manifest(tmp_path / "without.jsonl", rows)
    for name, manifest in (("with", with_context), ("without", without)):
        assert main(["predict", str(run), str(manifest), "-o", str(tmp_path / f"{name}.csv"), "--no-progress"]) == 0
    a, b = read_predictions(tmp_path / "with.csv"), read_predictions(tmp_path / "without.csv")
    assert a.ids == b.ids
    assert not np.allclose(a.probs, b.probs)
