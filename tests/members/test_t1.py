"""T1, the zero-shot LLM member (the model is tested in tests/models/test_zero_shot.py): its recipe, the
transcripts it reads, calibration and the saved state, the endpoint backend through the member, the two shipped
recipes, and a run through `abhinaya train` and `abhinaya predict`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from abhinaya.labels import CORPUS_LABEL_SETS, LabelSet
from abhinaya.manifest import Utterance
from abhinaya.members.t1 import T1Member, T1Recipe
from abhinaya.models.zero_shot import EndpointZeroShot, ZeroShotConfig, ZeroShotLM
from abhinaya.recipes import ConfigError, from_dict
from abhinaya.runs import load_recipe
from abhinaya.testing.chat_server import FakeChatServer
from abhinaya.weights.checkpoint import load_model_weights, save_tensors

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
MELD = CORPUS_LABEL_SETS["meld"]
MSP = CORPUS_LABEL_SETS["msp-podcast"]
TEXTS = ["oh no this is terrible", "wow", "i love you so very much really !", "okay fine", "why are you so sad ?"]


def build(tiny_llama_dir, label_set=MELD, **settings) -> tuple[T1Member, ZeroShotLM]:
    member = T1Member(T1Recipe(model=ZeroShotConfig(model=str(tiny_llama_dir), **settings)))
    return member, member.build(label_set, pretrained=True)[0]


# ----------------------------------------------------------------------------- configuration


def test_recipe_rejects_unknown_keys_and_bad_combinations():
    with pytest.raises(ConfigError, match="model.bogus"):
        from_dict(T1Recipe, {"member": "t1", "model": {"bogus": 1}})
    with pytest.raises(ConfigError, match="only mode 'generate'"):
        from_dict(T1Recipe, {"model": {"backend": "endpoint", "mode": "constrained", "calibration": "none"}})
    with pytest.raises(ConfigError, match="calibration"):
        from_dict(T1Recipe, {"model": {"mode": "generate"}})
    with pytest.raises(ConfigError, match=r"\{text\}"):
        from_dict(T1Recipe, {"model": {"user_template": "sentence"}})
    with pytest.raises(ConfigError, match="not one of"):
        from_dict(T1Recipe, {"model": {"mode": "vote"}})
    with pytest.raises(ConfigError, match=r"\{word\}"):
        from_dict(T1Recipe, {"model": {"reply_template": "The emotion is"}})
    with pytest.raises(ConfigError, match="cannot start the reply"):
        from_dict(T1Recipe, {"model": {"backend": "endpoint", "mode": "generate", "calibration": "none",
                                       "reply_template": "It is {word}"}})


# ----------------------------------------------------------------------------- data and calibration


def test_dataset_skips_rows_without_transcript_and_cuts_long_ones(tiny_llama_dir):
    member = T1Member(T1Recipe(model=ZeroShotConfig(model=str(tiny_llama_dir), max_words=3)))
    rows = [Utterance(id="a", label="happy", text="one two three four five"), Utterance(id="b", label="sad", text=" ")]
    with pytest.raises(ValueError, match="b: no transcript"):
        member.dataset(rows, MELD, train=False)
    dataset = member.dataset(rows, MELD, train=False, on_error="skip")
    assert len(dataset) == 1 and dataset.errors[0].startswith("b: no transcript")
    batch = member.collate([dataset[0]])
    assert batch["texts"] == ["one two three"] and batch["labels"].tolist() == [MELD.encode("happy")]
    assert batch["index"].tolist() == [0] and batch["ids"] == ["a"]


def test_calibration_shifts_by_the_stored_bias_and_round_trips(tiny_llama_dir, tmp_path):
    member, model = build(tiny_llama_dir, calibration="train_mean", calibration_utterances=4)
    utterances = [Utterance(id=f"u{i}", label="neutral", text=text) for i, text in enumerate(TEXTS)]
    dataset = member.dataset(utterances, MELD, train=False)
    raw = member.logits(model, member.collate([dataset[i] for i in range(len(dataset))]))
    assert torch.equal(model.calibration_bias, torch.zeros(len(MELD)))

    used = member.calibrate(model, dataset)
    assert used == 4
    bias = model.calibration_bias.clone()
    chosen = [TEXTS[i] for i in _sample(len(TEXTS), 4)]  # the reproducible sample calibrate draws
    torch.testing.assert_close(bias, model.label_log_likelihoods(chosen).mean(dim=0))
    calibrated = member.logits(model, member.collate([dataset[i] for i in range(len(dataset))]))
    torch.testing.assert_close(calibrated, raw - bias)

    state = member.saved_state(model)
    assert set(state) == {"calibration_bias"}
    save_tensors(tmp_path / "model.safetensors", state)
    _, rebuilt = build(tiny_llama_dir, calibration="train_mean")
    load_model_weights(rebuilt, tmp_path / "model.safetensors", partial=True)
    assert torch.equal(rebuilt.calibration_bias, bias)
    torch.testing.assert_close(rebuilt(TEXTS), calibrated)


def _sample(population: int, count: int) -> list[int]:
    import random

    return random.Random(0).sample(range(population), count)


def test_without_calibration_nothing_is_fitted(tiny_llama_dir):
    member, model = build(tiny_llama_dir, calibration="none")
    dataset = member.dataset([Utterance(id="a", label="sad", text="oh no")], MELD, train=False)
    assert member.calibrate(model, dataset) is None
    assert torch.equal(model.calibration_bias, torch.zeros(len(MELD)))


# ----------------------------------------------------------------------------- the endpoint backend


def test_endpoint_member_maps_replies(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "secret")
    with FakeChatServer([("ok", "Contempt."), ("ok", "I'd say anger"), ("ok", "no idea")]) as server:
        recipe = T1Recipe(model=ZeroShotConfig(backend="endpoint", model="llama-70b", mode="generate", calibration="none",
                                         endpoint_url=server.url, concurrency=1))
        member = T1Member(recipe)
        model = member.build(MSP, pretrained=True)[0]
        assert isinstance(model, EndpointZeroShot) and not list(model.parameters())
        dataset = member.dataset([Utterance(id=f"u{i}", text=t) for i, t in enumerate(["a", "b", "c"])], None, train=False)
        logits = member.logits(model, member.collate([dataset[i] for i in range(3)]))
    assert [MSP.decode(i) for i in logits.argmax(dim=1).tolist()] == ["contempt", "angry", "neutral"]
    assert model.reply_stats()["unmapped"] == 1 and member.saved_state(model) == {}
    sent = server.requests[0]["body"]
    assert sent["messages"][1]["content"] == "sentence: a" and "contempt" in sent["messages"][0]["content"]
    assert server.requests[0]["auth"] == "Bearer secret"


# ----------------------------------------------------------------------------- recipes


def test_meld_recipe_builds_with_a_tiny_model(tiny_llama_dir):
    recipe = load_recipe(RECIPES / "meld" / "t1.yaml", [f"model.model={tiny_llama_dir}"])
    assert isinstance(recipe, T1Recipe)
    assert (recipe.model.mode, recipe.model.calibration, recipe.model.backend) == ("constrained", "train_mean", "transformers")
    assert recipe.data.corpus == "meld" and LabelSet(recipe.data.labels) == MELD
    assert recipe.model.reply_template == "The emotion is {word}." and recipe.model.label_words["happy"] == "joy"
    model = T1Member(recipe).build(MELD, pretrained=True)[0]
    assert model.label_log_likelihoods(["wow"]).shape == (1, 7)
    assert "neutral, joy, surprise, anger, sadness, disgust, fear" in model.system_prompt
    assert load_recipe(RECIPES / "meld" / "t1.yaml").model.model == "smollm2"


def test_msp_recipe_is_the_paper_setting(monkeypatch):
    monkeypatch.setenv("ABHINAYA_LLM_URL", "http://127.0.0.1:9/v1")
    recipe = load_recipe(RECIPES / "msp_podcast" / "t1.yaml")
    config = recipe.model
    assert (config.backend, config.model, config.mode) == ("endpoint", "meta-llama/Llama-3.3-70B-Instruct", "generate")
    assert (config.temperature, config.top_p, config.user_template) == (0.7, 0.7, "sentence: {text}")
    assert LabelSet(recipe.data.labels) == MSP
    model = T1Member(recipe).build(MSP, pretrained=True)[0]  # nothing is sent
    assert model.client.url == "http://127.0.0.1:9/v1/chat/completions" and model.client.requests == 0
    assert "angry, sad, happy, surprise, fear, disgust, contempt, neutral" in model.system_prompt


# ----------------------------------------------------------------------------- through `abhinaya train`


def test_train_load_run_and_predict(tmp_path, tiny_llama_dir, capsys):
    from abhinaya.cli import main
    from abhinaya.manifest import read_manifest, write_manifest
    from abhinaya.predictions import read_predictions
    from abhinaya.runs import load_run
    from abhinaya.testing.dummies import make_dummy_meld
    from abhinaya.train.loop import train
    from abhinaya.weights.checkpoint import load_tensors

    root = make_dummy_meld(tmp_path / "meld", train_dialogues=4, dev_dialogues=2)
    recipe = load_recipe(
        RECIPES / "meld" / "t1.yaml",
        [f"data.root={root}", f"model.model={tiny_llama_dir}", "model.calibration_utterances=8", "train.progress=false"],
    )
    run = tmp_path / "run"
    summary = train(recipe, run, log=lambda message: None)
    assert summary["member"] == "t1"
    assert (run / "dev_predictions.csv").is_file()
    loaded = load_run(run)
    bias = loaded.model.calibration_bias
    assert bias.shape == (7,) and bool((bias != 0).all())
    assert set(load_tensors(run / "model.safetensors")) == {"calibration_bias"}  # no LLM weights in the run

    # `abhinaya predict` on the run: dev predictions again, a row without a transcript reported and skipped
    rows = [u for u in read_manifest(run / "data" / "splits.jsonl") if u.split == "dev"][:4]
    rows[1].text = None
    out = tmp_path / "pred.csv"
    capsys.readouterr()
    assert main(["predict", str(run), str(write_manifest(tmp_path / "dev.jsonl", rows)), "-o", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert rows[1].id in captured.out + captured.err
    table = read_predictions(out)
    assert sorted(table.ids) == sorted(u.id for i, u in enumerate(rows) if i != 1)
    dev = read_predictions(run / "dev_predictions.csv")
    assert [dev.labels[dev.ids.index(i)] for i in table.ids] == table.labels
