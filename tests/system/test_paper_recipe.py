"""The shipped system recipes: they parse, their members' recipes exist, and the paper-scale MSP-Podcast recipe runs
end to end with every model swapped for a tiny random one of the same architecture, on a generated miniature
MSP-Podcast, down to the challenge submission file."""

import json
from pathlib import Path

import pytest

from abhinaya.cli import main
from abhinaya.predictions import read_predictions
from abhinaya.system.recipe import load_system_recipe
from abhinaya.testing.chat_server import FakeChatServer
from abhinaya.testing.dummies import make_dummy_msp_podcast
from abhinaya.testing.tiny import write_tiny_beats_checkpoint, write_tiny_whisper_asr

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SYSTEMS = sorted(RECIPES.rglob("abhinaya.yaml"))


@pytest.mark.parametrize("path", SYSTEMS, ids=lambda p: p.parent.name)
def test_system_recipes_parse_and_name_existing_member_recipes(path):
    recipe = load_system_recipe(path)
    assert recipe.members and recipe.ensemble.tiebreak == "s2"
    for spec in recipe.members.values():
        assert Path(spec.recipe).is_file()


def test_the_ravdess_system_has_the_five_members_and_egemaps():
    recipe = load_system_recipe(RECIPES / "ravdess" / "abhinaya.yaml")
    assert list(recipe.members) == ["s1", "s2", "st1", "t1", "t2", "egemaps"]
    assert recipe.ensemble.choose == "dev" and recipe.transcribe.model == "whisper-base"


def test_the_msp_podcast_system_holds_the_paper_settings():
    recipe = load_system_recipe(RECIPES / "msp_podcast" / "abhinaya.yaml")
    assert sorted(recipe.members) == ["s1", "s2", "st1", "t1", "t2"]
    assert recipe.ensemble.choose == "majority" and recipe.ensemble.tiebreak == "s2"
    assert recipe.transcribe.model == "openai/whisper-large-v3" and recipe.transcribe.long_form == "first30"
    assert recipe.submission == "msp"


@pytest.mark.slow
def test_the_paper_scale_recipe_runs_end_to_end_with_tiny_models(
    tmp_path, tiny_wavlm_dir, tiny_whisper_dir, tiny_llama_dir
):
    root = make_dummy_msp_podcast(tmp_path / "msp", n_per_split=16)
    beats = write_tiny_beats_checkpoint(tmp_path / "beats.pt")
    asr = write_tiny_whisper_asr(tmp_path / "tiny-whisper-asr")
    fast = ["train.epochs=1", "train.progress=false", "train.balanced_dev_per_class=1"]
    head = ["model.head_hidden=16", "model.attention_dim=8"]
    speech_llm = [f"model.whisper={tiny_whisper_dir}", f"model.llm={tiny_llama_dir}", f"model.beats={beats}",
                  "model.qformer.hidden_size=16", "model.qformer.num_heads=2", "model.qformer.intermediate_size=32",
                  f"model.feature_cache={tmp_path / 'features'}", "train.grad_accum=1", *head, *fast]
    sets = {
        "s1": [f"model.encoder={tiny_wavlm_dir}", "audio.train_crop_seconds=0.5", "train.num_workers=0", *head, *fast],
        "s2": speech_llm,
        "st1": speech_llm,
        "t2": [f"model.llm={tiny_llama_dir}", *head, *fast],
        "t1": ["train.balanced_dev_per_class=1", "train.progress=false"],
    }
    # A random-weight Whisper says nothing, so the corpus's own transcripts are kept (overwrite off); the stage still
    # runs and loads the tiny Whisper.
    overrides = [f"data.root={root}", f"transcribe.model={asr}", "transcribe.max_new_tokens=8",
                 "transcribe.overwrite=false", "ensemble.folds=2"]
    overrides += [f"{member}.{value}" for member, values in sets.items() for value in values]
    run_dir = tmp_path / "run"
    with FakeChatServer([("ok", "Happy."), ("ok", "angry"), ("ok", "I think it is sad")]) as server:
        overrides.append(f"t1.model.endpoint_url={server.url}")
        args = ["run", str(RECIPES / "msp_podcast" / "abhinaya.yaml"), "-o", str(run_dir), "--no-progress"]
        assert main(args + sum((["--set", value] for value in overrides), [])) == 0
    stages = json.loads((run_dir / "stages.json").read_text())["stages"]
    assert "transcribe" in stages and {f"train {m}" for m in sets} <= set(stages)
    record = json.loads((run_dir / "ensemble.json").read_text())
    assert record["chosen"] == "majority" and record["system"]["tiebreak"] == "s2"
    lines = (run_dir / "submission.csv").read_text().splitlines()
    assert lines[0] == "FileName,EmoClass"
    test = read_predictions(run_dir / "predictions" / "system.test.csv")
    assert len(lines) - 1 == len(test) > 0
    assert {line.split(",")[1] for line in lines[1:]} <= set("ASHUFDCN")
    assert (run_dir / "report.html").is_file()
