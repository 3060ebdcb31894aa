"""The demo's system: the shipped RAVDESS system recipe shrunk by listed overrides, and the demo's own choices (the
whole demo through the command line is in test_cli.py)."""

from pathlib import Path

import pytest

from abhinaya import demo
from abhinaya.recipes import read_yaml
from abhinaya.system.recipe import load_system_recipe
from abhinaya.testing import demo_recipes
from abhinaya.testing.dummies import make_dummy_ravdess

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
MODELS = {"encoder": "whisper-base", "whisper_layers": 6, "llm": "smollm2", "llm_layers": 30,
          "feature_cache": "/tmp/features"}


def test_the_demo_system_is_the_shipped_recipe_plus_the_listed_overrides(tmp_path):
    members = list(demo_recipes.DEMO_OVERRIDES)
    system = demo_recipes.demo_system(manifest=tmp_path / "m.jsonl", corpus="ravdess", members=members,
                                      transcriber={"overwrite": False}, **MODELS)
    shipped = read_yaml(RECIPES / "ravdess" / "abhinaya.yaml")
    assert list(system["members"]) == list(shipped["members"])
    assert system["ensemble"] == shipped["ensemble"]
    for name, entry in system["members"].items():
        assert Path(entry["recipe"]) == RECIPES / "ravdess" / shipped["members"][name]["recipe"]
        assert entry["set"] == [*demo_recipes.DEMO_OVERRIDES[name], *demo_recipes.model_overrides(name, **MODELS)]
    path = tmp_path / "system.yaml"
    from abhinaya.recipes import write_yaml

    write_yaml(path, system)
    recipe = load_system_recipe(path)
    assert recipe.transcribe.overwrite is False and recipe.data.manifest == str(tmp_path / "m.jsonl")


def test_small_models_run_all_of_their_layers():
    tiny = {**MODELS, "whisper_layers": 2, "llm_layers": 3}
    assert "model.whisper_layer=2" in demo_recipes.model_overrides("s2", **tiny)
    assert "model.layer=1" in demo_recipes.model_overrides("s2", **tiny)  # the recipe's 1 layer fits
    t2 = demo_recipes.model_overrides("t2", **tiny)
    assert "model.layer=3" in t2 and "model.lora_layers=3" in t2
    assert "model.layer=8" in demo_recipes.model_overrides("t2", **MODELS)


def test_without_llm_only_the_acoustic_members_run(tmp_path, monkeypatch):
    calls = []

    def never(name):
        calls.append(name)
        raise ImportError(f"{name} is not installed")

    monkeypatch.setattr(demo, "_offline_model", never)
    captured = {}

    def fake_run(recipe, run_dir, **kwargs):
        captured["recipe"] = read_yaml(recipe)
        raise KeyboardInterrupt  # stop before training anything

    monkeypatch.setattr("abhinaya.system.runner.run_system", fake_run)
    source = make_dummy_ravdess(tmp_path / "ravdess", actors=(1, 2, 3, 4, 5, 6), statements=("01",))
    with pytest.raises(KeyboardInterrupt):
        demo.run_demo(data=source, workdir=tmp_path / "work", log=lambda _: None, progress=False, llm=False)
    assert list(captured["recipe"]["members"]) == ["s1", "egemaps"]
    assert calls == ["whisper-base"]  # no language model was asked for
    assert captured["recipe"]["ensemble"]["tiebreak"] == "s1"


def test_missing_recipes_folder_is_a_clear_error(tmp_path, monkeypatch):
    fake = tmp_path / "site-packages" / "abhinaya" / "__init__.py"
    monkeypatch.setattr(demo_recipes.abhinaya, "__file__", str(fake))
    with pytest.raises(FileNotFoundError, match="recipes"):
        demo_recipes.model_overrides("s1", **MODELS)
