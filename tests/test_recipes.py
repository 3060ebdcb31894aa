"""The shipped recipes parse, hold the documented settings, and train end to
end with tiny random-weight encoders standing in for the pretrained ones."""

import json
from pathlib import Path

import pytest

from abhinaya.cli import main
from abhinaya.recipes import ConfigError
from abhinaya.runs import load_recipe
from abhinaya.testing.dummies import make_dummy_msp_podcast, make_dummy_ravdess

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
FAST = ["train.epochs=1", "train.progress=false", "train.num_workers=0", "audio.train_crop_seconds=0.5"]


MEMBER_RECIPES = sorted(p for p in RECIPES.rglob("*.yaml") if p.name != "abhinaya.yaml")  # abhinaya.yaml: systems


@pytest.mark.parametrize("path", MEMBER_RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_recipe_parses(path):
    recipe = load_recipe(path)
    assert recipe.member
    assert recipe.data.root is None  # the corpus folder is always given with --set data.root=DIR


def test_msp_podcast_s1_holds_the_paper_settings():
    recipe = load_recipe(RECIPES / "msp_podcast" / "s1.yaml")
    assert recipe.model.encoder == "microsoft/wavlm-large" and recipe.model.freeze == "feature_extractor"
    assert recipe.model.pooling == "attentive"
    assert (recipe.loss.name, recipe.loss.gamma) == ("weighted_focal", 2.0)
    assert recipe.train.encoder_lr == 1e-5 and recipe.train.epochs == 20
    assert recipe.train.batch_size * recipe.train.grad_accum == 16
    assert recipe.audio.train_crop_seconds == 10.0
    assert recipe.train.balanced_dev and recipe.train.balanced_dev_per_class == 326


def test_msp_podcast_s1_trains_with_a_tiny_wavlm(tmp_path, tiny_wavlm_dir):
    root = make_dummy_msp_podcast(tmp_path / "msp")
    run = tmp_path / "run"
    sets = [f"data.root={root}", f"model.encoder={tiny_wavlm_dir}", "train.balanced_dev_per_class=1",
            "model.head_hidden=16", "model.attention_dim=8", *FAST]
    assert main(["train", str(RECIPES / "msp_podcast" / "s1.yaml"), "-o", str(run), *sum((["--set", s] for s in sets), [])]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dev_utterances"] == 8  # class-balanced dev: one per class
    assert main(["predict", str(run), str(run / "data" / "splits.jsonl"), "--split", "test1", "-o", str(tmp_path / "p.csv"),
                 "--format", "msp", "--no-progress"]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "FileName,EmoClass" and len(lines) > 1


def test_ravdess_s1_trains_with_a_tiny_whisper(tmp_path, tiny_whisper_dir):
    root = make_dummy_ravdess(tmp_path / "ravdess", actors=(1, 2, 19, 20))
    run = tmp_path / "run"
    sets = [f"data.root={root}", f"model.encoder={tiny_whisper_dir}", "model.freeze_layers=1", *FAST]
    assert main(["train", str(RECIPES / "ravdess" / "s1.yaml"), "-o", str(run), *sum((["--set", s] for s in sets), [])]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_utterances"] == 32 and summary["dev_utterances"] == 32  # actors 19 and 20 are dev


def test_msp_podcast_t2_holds_the_paper_settings():
    recipe = load_recipe(RECIPES / "msp_podcast" / "t2.yaml")
    model = recipe.model
    assert model.llm == "meta-llama/Llama-3.1-8B" and model.layer is None and model.lora_layers is None
    assert (model.lora_r, model.lora_alpha, model.lora_dropout) == (8, 32, 0.1)
    assert model.pooling == "attentive"
    assert recipe.loss.name == "vs" and recipe.loss.vs_class_weights
    assert (recipe.loss.vs_gamma, recipe.loss.vs_tau) == (0.3, 1.0)
    assert recipe.train.encoder_lr == 1e-5 and recipe.train.batch_size * recipe.train.grad_accum == 8
    assert recipe.text.max_tokens == 128


@pytest.mark.parametrize("corpus", ["msp_podcast", "meld"])
def test_t2_recipes_train_with_a_tiny_llama(tmp_path, tiny_llama_dir, corpus):
    from abhinaya.testing.dummies import make_dummy_meld

    if corpus == "meld":
        root = make_dummy_meld(tmp_path / "meld", train_dialogues=6, dev_dialogues=3)
        extra = ["model.layer=3", "model.lora_layers=1"]  # the tiny model has 3 layers
    else:
        root = make_dummy_msp_podcast(tmp_path / "msp")
        extra = ["train.balanced_dev_per_class=1"]
    run = tmp_path / "run"
    sets = [f"data.root={root}", f"model.llm={tiny_llama_dir}", "model.head_hidden=16", "model.attention_dim=8",
            "train.epochs=1", "train.progress=false", *extra]
    recipe = RECIPES / corpus / "t2.yaml"
    assert main(["train", str(recipe), "-o", str(run), *sum((["--set", s] for s in sets), [])]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == 1 and summary["train_utterances"] > 0


@pytest.mark.parametrize("member", ["s2", "st1"])
def test_msp_podcast_speech_llm_recipes_hold_the_paper_settings(member):
    recipe = load_recipe(RECIPES / "msp_podcast" / f"{member}.yaml")
    model = recipe.model
    assert model.whisper == "openai/whisper-large-v2" and model.layer is None
    assert model.llm == {"s2": "lmsys/vicuna-13b-v1.1", "st1": "lmsys/vicuna-7b-v1.5"}[member]
    assert (model.lora_r, model.lora_alpha, model.lora_dropout) == (8, 32, 0.1)
    assert model.lora_target_modules == ["q_proj", "v_proj"]
    q = model.qformer
    assert (q.hidden_size, q.num_layers, q.window, q.stride, q.num_queries) == (768, 2, 17, 17, 1)
    assert model.train_crop_seconds == 5.0 and model.pooling == "attentive"
    assert recipe.loss.name == {"s2": "weighted_focal", "st1": "vs"}[member]
    assert recipe.train.encoder_lr == recipe.train.head_lr == 1e-5 and recipe.train.epochs == 20
    assert recipe.train.batch_size * recipe.train.grad_accum == 32
    assert recipe.train.balanced_dev and recipe.train.balanced_dev_per_class == 326
    assert ("{text}" in recipe.prompt.template) == (member == "st1")


@pytest.mark.parametrize("member", ["s2", "st1"])
def test_msp_podcast_speech_llm_recipes_train_with_tiny_salmonn_parts(
    tmp_path, tiny_whisper_dir, tiny_llama_dir, member
):
    """The paper-scale recipe with tiny stand-ins: Whisper, BEATs (official checkpoint layout), the LLM and an
    official-layout SALMONN checkpoint, loaded with every key accounted for."""
    import torch

    from abhinaya.models.speech_llm import SpeechLLM
    from abhinaya.testing.tiny import write_tiny_beats_checkpoint
    from abhinaya.weights.salmonn_checkpoint import _ours_to_salmonn

    beats_path = write_tiny_beats_checkpoint(tmp_path / "beats.pt")

    qformer = ["model.qformer.hidden_size=16", "model.qformer.num_heads=2", "model.qformer.intermediate_size=32"]
    model_sets = [f"model.whisper={tiny_whisper_dir}", f"model.llm={tiny_llama_dir}", f"model.beats={beats_path}",
                  "model.head_hidden=16", "model.attention_dim=8", f"model.feature_cache={tmp_path / 'features'}",
                  *qformer]
    # An official-layout checkpoint for the tiny model: SALMONN's names for every part it trains.
    tiny = load_recipe(RECIPES / "msp_podcast" / f"{member}.yaml", model_sets)
    built = SpeechLLM.from_pretrained(tiny.model)
    salmonn = {_ours_to_salmonn(n): p.detach().clone() + 0.01 for n, p in built.named_parameters()
               if p.requires_grad and not n.startswith(("pooling.", "head."))}
    torch.save({"model": salmonn}, tmp_path / "salmonn.pth")

    root = make_dummy_msp_podcast(tmp_path / "msp")
    run = tmp_path / "run"
    sets = [f"data.root={root}", *model_sets, f"model.salmonn_checkpoint={tmp_path / 'salmonn.pth'}",
            "train.balanced_dev_per_class=1", "train.epochs=1", "train.progress=false", "train.grad_accum=1"]
    recipe_path = RECIPES / "msp_podcast" / f"{member}.yaml"
    assert main(["train", str(recipe_path), "-o", str(run), *sum((["--set", s] for s in sets), [])]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == 1 and summary["train_utterances"] > 0



def test_the_multi_corpus_recipe_takes_its_folders_and_per_corpus_settings_from_set():
    recipe = load_recipe(RECIPES / "multi" / "s1.yaml", [
        "data.roots.ravdess=/r", "data.roots.emodb=/e", 'data.corpora.ravdess.test_speakers=["15","16"]',
        "data.corpora.1.weight=2",
    ])
    assert recipe.data.roots == {"ravdess": "/r", "emodb": "/e"}
    ravdess, emodb = recipe.data.corpora
    assert ravdess.test_speakers == ["15", "16"] and ravdess.dev_speakers == ["19", "20"]
    assert emodb.weight == 2.0 and recipe.data.balance == "corpus"
    with pytest.raises(ConfigError, match="no item named 'meld' \\(there are ravdess, emodb\\)"):
        load_recipe(RECIPES / "multi" / "s1.yaml", ["data.corpora.meld.weight=2"])
