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
from abhinaya.recipes import to_dict
from abhinaya.runs import load_recipe
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


def test_tiny_llama_knows_the_words_it_was_given(tmp_path):
    from abhinaya.models.llm import load_tokenizer

    folder = demo._tiny_llama(tmp_path / "llm", ["Oh, that’s GREAT!", "so lonely"])
    tokenizer = load_tokenizer(folder)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("So great, oh! Lonely", add_special_tokens=False)["input_ids"])
    assert tokens == ["so", "great", ",", "oh", "!", "lonely"]
    assert tokenizer.convert_ids_to_tokens(tokenizer("dreadful", add_special_tokens=False)["input_ids"]) == ["<unk>"]
    assert "assistant" in tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                          add_generation_prompt=True)


def test_llm_members_are_the_meld_recipes_but_for_what_keeps_the_demo_short():
    manifest = Path("manifest.jsonl")
    t2 = to_dict(demo._t2_recipe(manifest, "meld", "smollm2", 30, demo.DEMO_T2_EPOCHS, progress=True))
    shipped = to_dict(load_recipe(RECIPES / "meld" / "t2.yaml"))
    assert t2["train"].pop("epochs") == demo.DEMO_T2_EPOCHS  # the demo trains fewer epochs than the recipe
    shipped["train"].pop("epochs")
    for section in ("member", "text", "model", "loss", "train"):
        assert t2[section] == shipped[section], section

    t1 = to_dict(demo._t1_recipe(manifest, "meld", "smollm2", progress=True))
    shipped = to_dict(load_recipe(RECIPES / "meld" / "t1.yaml"))
    assert t1["model"].pop("calibration_utterances") == demo.DEMO_T1_CALIBRATION
    shipped["model"].pop("calibration_utterances")
    for section in ("member", "model", "loss", "train"):
        assert t1[section] == shipped[section], section


@pytest.mark.parametrize("member", ["s2", "st1"])
def test_speech_llm_members_are_the_ravdess_recipes_but_for_what_keeps_the_demo_short(member, tmp_path):
    features = tmp_path / "features"
    demo_recipe = to_dict(demo._speech_llm_recipe(
        member, Path("manifest.jsonl"), "ravdess", "whisper-base", "smollm2", 30, demo.DEMO_SPEECH_LLM_EPOCHS,
        features, progress=True,
    ))
    shipped = to_dict(load_recipe(RECIPES / "ravdess" / f"{member}.yaml"))
    # shorter: fewer epochs; the frozen Whisper output is cached in the demo's folder
    assert demo_recipe["train"].pop("epochs") == demo.DEMO_SPEECH_LLM_EPOCHS < shipped["train"].pop("epochs")
    assert demo_recipe["train"].pop("average_epochs") == min(3, demo.DEMO_SPEECH_LLM_EPOCHS)
    assert shipped["train"].pop("average_epochs") == 3
    assert demo_recipe["model"].pop("feature_cache") == str(features)
    assert shipped["model"].pop("feature_cache") == "auto"
    for section in ("member", "audio", "prompt", "model", "loss", "train"):
        assert demo_recipe[section] == shipped[section], section
    assert demo_recipe["data"]["corpus"] == shipped["data"]["corpus"] == "ravdess"
    # an LLM with fewer layers than the demo runs (the tiny stand-in) runs all of them
    tiny = demo._speech_llm_recipe(
        member, Path("m.jsonl"), "ravdess", "w", "l", 1, 1, features, progress=False, whisper_layers=2
    )
    assert tiny.model.layer == 1
    assert tiny.model.whisper_layer == 2  # likewise Whisper's layers
