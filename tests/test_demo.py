"""The demo's stages on single miniature corpora, with tiny random-weight
models in place of Whisper-base and SmolLM2 (the real weights are never read;
the whole demo through the command line is in test_cli.py)."""

from pathlib import Path

import pytest

from abhinaya import demo
from abhinaya.corpora import prepare_corpus
from abhinaya.corpora.ravdess import RAVDESS_STATEMENTS
from abhinaya.manifest import read_manifest, write_manifest
from abhinaya.predictions import read_predictions
from abhinaya.recipes import apply_overrides, read_yaml, to_dict
from abhinaya.runs import load_recipe, recipe_from_dict
from abhinaya.testing import demo_recipes
from abhinaya.testing.dummies import make_dummy_meld, make_dummy_ravdess

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _no_offline_weights(name):
    raise ModuleNotFoundError(f"the weight package of {name} is not installed")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from more threads, and lose much when another process keeps a core busy."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_without_llm_stages_nothing_is_transcribed_and_no_llm_member_runs(tmp_path, monkeypatch):
    def never(name):
        raise AssertionError(f"{name} was asked for although the language-model stages are off")

    monkeypatch.setattr(demo, "_offline_model", never)
    messages = []
    results = demo.run_demo(
        data=make_dummy_meld(tmp_path / "meld", train_dialogues=8, dev_dialogues=4),
        corpus="meld", workdir=tmp_path / "work", log=messages.append, progress=False, llm=False,
    )
    assert set(results) == {"meld"} and set(results["meld"].reports) == {"tfidf-logreg"}
    assert not (tmp_path / "work" / "meld" / "t1-run").exists()

    source = make_dummy_ravdess(tmp_path / "ravdess", actors=(1, 2, 3, 4, 5), statements=("01",))
    ravdess = demo.run_corpus("ravdess", source, tmp_path / "work", messages.append, False, 0, llm=False)
    assert ravdess.word_error_rate is None and "transcripts" not in ravdess.files
    assert not (tmp_path / "work" / "ravdess" / "transcripts.jsonl").exists()
    # nor S2 and ST1, the speech LLM members
    assert not {"s2", "st1", "st1-transcripts"} & (set(ravdess.reports) | set(ravdess.files))
    for path in ("s2-run", "st1-run", "s2.csv", "st1.csv", "st1-transcripts.jsonl"):
        assert not (tmp_path / "work" / "ravdess" / path).exists(), path
    assert not (tmp_path / "work" / "features").exists()


def test_llm_members_predict_a_labelled_test_split_and_vote(tmp_path, monkeypatch, tiny_llama_dir):
    # SmolLM2 "installed" (the shared tiny Llama stands in for it); the members then evaluate on the
    # labelled test split, which they predict from their run folders (dev served for model selection).
    monkeypatch.setattr(
        demo, "_offline_model", lambda name: tiny_llama_dir if name == "smollm2" else _no_offline_weights(name)
    )
    messages = []
    source = make_dummy_meld(tmp_path / "meld", train_dialogues=8, dev_dialogues=4, test_dialogues=4)
    result = demo.run_corpus("meld", source, tmp_path / "work", messages.append, False, llm=True, t2_epochs=1)
    assert not any("tiny random-weight" in message for message in messages)
    outdir = tmp_path / "work" / "meld"
    test_ids = sorted(u.id for u in read_manifest(outdir / "manifest.jsonl") if u.split == "test")
    for table in ("t1", "t2", "tfidf-logreg", "vote", "soft-vote"):
        assert sorted(read_predictions(outdir / f"{table}.csv").ids) == test_ids
    assert {"t1", "t2", "tfidf-logreg", "vote (majority)", "vote (soft)"} <= set(result.reports)
    assert all(result.reports[name]["num_utterances"] == len(test_ids) for name in ("t1", "t2"))
    # a 3-layer model: T2 runs every layer (the recipe's 24 is for SmolLM2's 30)
    assert load_recipe(outdir / "t2-run" / "config.yaml").model.layer == 3


def test_speech_llm_members_predict_the_test_split_and_s2_breaks_ties(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "_offline_model", _no_offline_weights)
    monkeypatch.setenv("ABHINAYA_FEATURE_CACHE", str(tmp_path / "users-cache"))
    messages = []
    source = make_dummy_ravdess(tmp_path / "ravdess", actors=(1, 2, 3, 4, 5))
    result = demo.run_corpus(
        "ravdess", source, tmp_path / "work", messages.append, False, 0, llm=True, speech_llm_epochs=1
    )
    outdir = tmp_path / "work" / "ravdess"
    test_ids = sorted(u.id for u in read_manifest(outdir / "manifest.split.jsonl") if u.split == "test")
    for table in ("s2", "st1", "vote", "soft-vote"):
        assert sorted(read_predictions(outdir / f"{table}.csv").ids) == test_ids, table
    assert {"s2", "st1", "vote (majority)", "vote (soft)"} <= set(result.reports)
    assert all(result.reports[name]["num_utterances"] == len(test_ids) for name in ("s2", "st1"))
    assert any("S2 and ST1 use a tiny random-weight Llama" in message for message in messages)
    # ST1 read the sentences the corpus comes with; nothing was left for Whisper to transcribe for it
    st1_manifest = result.files["st1-transcripts"]
    assert load_recipe(outdir / "st1-run" / "config.yaml").data.manifest == str(st1_manifest)
    assert {u.text for u in read_manifest(st1_manifest)} == set(RAVDESS_STATEMENTS.values())
    assert any(message.startswith("ST1's transcripts: the texts the corpus comes with") for message in messages)
    assert not any(message.startswith("ST1's transcripts: Whisper") for message in messages)
    # the frozen Whisper output is cached in the demo's folder (ST1 reads what S2 wrote), not the user's
    for member in ("s2", "st1"):
        recipe = load_recipe(outdir / f"{member}-run" / "config.yaml")
        assert recipe.model.feature_cache == str(tmp_path / "work" / "features")
        assert recipe.model.layer == demo.SPEECH_LLM_LAYERS[member]  # 1 or 2: the tiny LLM has 2 layers
    assert any((tmp_path / "work" / "features").rglob("*.npy")) and not (tmp_path / "users-cache").exists()
    # the vote: one voice per member and baseline; ties that S2 takes part in go to S2
    voters = [read_predictions(outdir / f"{name}.csv") for name in ("s2", "st1", "mel-logreg", "mel-knn", "mel-forest")]
    vote = read_predictions(outdir / "vote.csv")
    for utt_id, label in zip(vote.ids, vote.labels):
        votes = [table.labels[table.ids.index(utt_id)] for table in voters]
        counts = {lab: votes.count(lab) for lab in votes}
        winners = [lab for lab, count in counts.items() if count == max(counts.values())]
        assert label in winners
        if votes[0] in winners:
            assert label == votes[0]


def test_st1_transcribes_only_the_utterances_without_text(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "_offline_model", _no_offline_weights)
    root = make_dummy_ravdess(tmp_path / "ravdess", actors=(1,), emotions=("01", "05"), statements=("01",))
    utterances = prepare_corpus("ravdess", root, tmp_path / "all.jsonl").utterances
    utterances[0].text = None
    manifest = write_manifest(tmp_path / "manifest.jsonl", utterances)
    outdir = tmp_path / "work" / "ravdess"
    outdir.mkdir(parents=True)
    messages = []
    st1_manifest = demo._st1_transcripts(manifest, "ravdess", outdir, messages.append, False)
    rows = {u.id: u.text for u in read_manifest(st1_manifest)}
    assert rows[utterances[1].id] == RAVDESS_STATEMENTS["01"]
    assert rows[utterances[0].id] is not None  # noise from a random Whisper, but transcribed
    assert read_manifest(manifest)[0].text is None  # the split manifest is left as it was
    assert any(m.startswith("ST1's transcripts: the texts the corpus comes with, for 1 ") for m in messages)
    assert any(m.startswith("ST1's transcripts: Whisper, for the 1 utterance(s) without text") for m in messages)


def test_transcription_without_reference_texts_reports_no_error_rate(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "_offline_model", _no_offline_weights)
    root = make_dummy_ravdess(tmp_path / "ravdess", actors=(1,), emotions=("01", "05"), statements=("01", "02"))
    utterances = prepare_corpus("ravdess", root, tmp_path / "all.jsonl").utterances
    for utt in utterances:
        utt.text, utt.split = None, "test"
    manifest = write_manifest(tmp_path / "manifest.jsonl", utterances)
    outdir = tmp_path / "work" / "ravdess"
    outdir.mkdir(parents=True)
    messages = []
    transcripts, wer = demo._transcribe(manifest, "ravdess", outdir, "test", messages.append, False, synthetic=True)
    assert wer is None and any("no word error rate" in message for message in messages)
    rows = read_manifest(transcripts)
    assert sorted(u.id for u in rows) == sorted(u.id for u in utterances)
    assert all(u.text is not None for u in rows)  # noise from a random Whisper, but every row was transcribed
    assert (tmp_path / "work" / "tiny-whisper" / "preprocessor_config.json").is_file()


DEMO_RUN = {
    "manifest": "work dir/manifest.split.jsonl", "corpus": "ravdess", "progress": False, "epochs": 2,
    "encoder": "whisper-base", "whisper": "whisper-base", "whisper_layers": 6, "llm": "smollm2", "llm_layers": 30,
    "feature_cache": "work dir/features",
}


@pytest.mark.parametrize("member", sorted(demo_recipes.DEMO_RECIPES))
def test_demo_recipes_are_the_shipped_files_plus_the_listed_overrides(member):
    run = {**DEMO_RUN, "corpus": "meld" if member in ("t1", "t2") else "ravdess"}
    listed = [*demo_recipes.DEMO_OVERRIDES[member], *demo_recipes.run_overrides(member, **run)]
    shipped = read_yaml(RECIPES / demo_recipes.DEMO_RECIPES[member])
    expected = to_dict(recipe_from_dict(apply_overrides(shipped, listed)))
    assert to_dict(demo_recipes.demo_recipe(member, **run)) == expected
    # nothing but the listed keys differs from the shipped recipe
    original = to_dict(recipe_from_dict(shipped))
    listed_keys = {override.split("=", 1)[0] for override in listed}
    assert set(_differences(original, expected)) <= listed_keys
    assert expected["member"] == shipped["member"] == member
    assert expected["data"]["manifest"] == run["manifest"]  # a path with a space survives the override


def _differences(a, b, prefix=""):
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict) and key not in ("label_words",):
            yield from _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            yield prefix + key


def test_demo_scale_overrides():
    # the speech LLM members and T2 run every layer of a model smaller than their recipes' (the tiny stand-ins)
    tiny = {**DEMO_RUN, "whisper_layers": 2, "llm_layers": 1, "epochs": 1}
    for member in ("s2", "st1"):
        recipe = demo_recipes.demo_recipe(member, **tiny)
        assert (recipe.model.layer, recipe.model.whisper_layer) == (1, 2)
        assert (recipe.train.epochs, recipe.train.average_epochs) == (1, 1)
        full = demo_recipes.demo_recipe(member, **DEMO_RUN)
        assert full.model.layer == demo.SPEECH_LLM_LAYERS[member] and full.model.whisper_layer == 4
    t2 = demo_recipes.demo_recipe("t2", **{**tiny, "corpus": "meld", "llm_layers": 3})
    assert (t2.model.layer, t2.model.lora_layers) == (3, 3)
    assert demo_recipes.demo_recipe("t1", **{**DEMO_RUN, "corpus": "meld"}).model.calibration_utterances == 32
    # a layout without a label set of its own names no corpus
    assert demo_recipes.demo_recipe("s1", **{**DEMO_RUN, "corpus": "csv"}).data.corpus is None


def test_missing_recipes_folder_is_a_clear_error(tmp_path, monkeypatch):
    fake = tmp_path / "site-packages" / "abhinaya" / "__init__.py"
    fake.parent.mkdir(parents=True)
    fake.touch()
    monkeypatch.setattr(demo_recipes.abhinaya, "__file__", str(fake))
    with pytest.raises(FileNotFoundError, match="shipped recipes are not found.*pip install -e"):
        demo_recipes.demo_recipe("s1", **DEMO_RUN)
