import json
import warnings

import numpy as np
import pytest

from abhinaya.evaluation import combiners
from abhinaya.evaluation.combiners import (
    COMBINER_METHODS,
    FittedEnsemble,
    choose_ensemble,
    cross_fit,
    fit_ensemble,
)
from abhinaya.evaluation.metrics import classification_report
from abhinaya.labels import LabelSet
from abhinaya.predictions import PredictionTable

CLASSES = ["angry", "sad", "happy", "neutral"]


def member_table(truth, knows, rng, ids=None, confidence=0.8, labels_only=False):
    """A member that is right on the classes in ``knows`` and guesses among the
    other classes (confidently) otherwise. ``truth``: (N,) class indices."""
    unknown = [c for c in range(len(CLASSES)) if c not in knows]
    ids = ids or [f"u{i:03d}" for i in range(len(truth))]
    probs = (1 - confidence) * rng.dirichlet(np.ones(len(CLASSES)), size=len(truth))
    guesses = np.array([t if t in knows else rng.choice(unknown) for t in truth])
    probs[np.arange(len(truth)), guesses] += confidence
    labels = [CLASSES[i] for i in probs.argmax(axis=1)]
    if labels_only:
        return PredictionTable(ids, labels)
    return PredictionTable(ids, labels, probs, LabelSet(CLASSES))


def complementary(n, seed, labels_only_second=False):
    """s1 knows angry/sad, s2 knows happy/neutral; each guesses the rest."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, len(CLASSES), n)
    tables = {
        "s1": member_table(truth, {0, 1}, rng),
        "s2": member_table(truth, {2, 3}, rng, labels_only=labels_only_second),
    }
    references = {f"u{i:03d}": CLASSES[t] for i, t in enumerate(truth)}
    return tables, references


def macro_f1(table, references):
    return classification_report([references[i] for i in table.ids], table.labels, CLASSES)["macro_f1"]


def test_stacking_beats_each_member_when_members_are_complementary():
    dev, dev_refs = complementary(240, seed=0)
    test, test_refs = complementary(240, seed=1)
    fitted = fit_ensemble("stacking", dev, dev_refs)
    stacked = fitted.apply(test)
    assert stacked.source == "stacking"
    assert list(stacked.label_set) == CLASSES
    np.testing.assert_allclose(stacked.probs.sum(axis=1), 1.0)
    best_member = max(macro_f1(table, test_refs) for table in test.values())
    assert best_member < 0.8
    assert macro_f1(stacked, test_refs) > best_member + 0.15
    assert macro_f1(cross_fit("stacking", dev, dev_refs), dev_refs) > 0.95


def test_labels_only_member_in_stacking():
    dev, dev_refs = complementary(240, seed=2, labels_only_second=True)
    test, test_refs = complementary(240, seed=3, labels_only_second=True)
    assert dev["s2"].probs is None
    fitted = fit_ensemble("stacking", dev, dev_refs)
    assert macro_f1(fitted.apply(test), test_refs) > 0.95


def test_stacking_gives_classes_unseen_in_training_probability_zero():
    dev, refs = complementary(80, seed=4)
    refs = {utt_id: label for utt_id, label in refs.items() if label != "neutral"}
    fitted = fit_ensemble("stacking", dev, refs)
    assert fitted.stacker["classes"] == ["angry", "sad", "happy"]
    out = fitted.apply(dev)
    assert list(out.label_set) == CLASSES
    assert np.all(out.probs[:, CLASSES.index("neutral")] == 0)
    assert "neutral" not in out.labels


def test_a_member_at_chance_gets_weight_zero_and_the_vote_keeps_up_with_the_best_member():
    rng = np.random.default_rng(5)
    truth = rng.integers(0, len(CLASSES), 300)
    ids = [f"u{i:03d}" for i in range(300)]
    tables = {
        "s2": member_table(truth, {0, 1, 2}, rng),
        "t1": member_table(truth, {0, 1}, rng),
        "egemaps": PredictionTable(ids, ["neutral"] * 300),  # always one class: chance level
    }
    refs = {utt_id: CLASSES[t] for utt_id, t in zip(ids, truth)}
    fitted = fit_ensemble("weighted", tables, refs, tiebreak="egemaps")
    weights = dict(zip(fitted.members, fitted.weights))
    assert weights["egemaps"] == 0.0
    assert weights["s2"] > weights["t1"] > 0
    vote = fitted.apply(tables)
    assert vote.source == "weighted"
    assert macro_f1(vote, refs) >= max(macro_f1(table, refs) for table in tables.values())
    # every member at chance: equal weights instead of none
    at_chance = {"a": tables["egemaps"], "b": PredictionTable(ids, ["angry"] * 300)}
    assert fit_ensemble("weighted", at_chance, refs).weights == [1.0, 1.0]


def test_best_member_is_the_one_with_the_highest_dev_macro_f1():
    rng = np.random.default_rng(6)
    truth = rng.integers(0, len(CLASSES), 100)
    tables = {"t1": member_table(truth, {0}, rng), "s2": member_table(truth, {0, 1, 2}, rng)}
    refs = {f"u{i:03d}": CLASSES[t] for i, t in enumerate(truth)}
    fitted = fit_ensemble("best_member", tables, refs)
    assert fitted.member == "s2"
    out = fitted.apply(tables)
    assert out.labels == tables["s2"].labels and out.source == "best_member"


def test_majority_tie_goes_to_the_tiebreak_member():
    ids = ["a", "b"]
    tables = {
        "s1": PredictionTable(ids, ["happy", "sad"]),
        "s2": PredictionTable(ids, ["sad", "sad"]),
    }
    refs = {"a": "happy", "b": "sad"}
    assert fit_ensemble("majority", tables, refs, tiebreak="s2").apply(tables).labels == ["sad", "sad"]
    assert fit_ensemble("majority", tables, refs).apply(tables).labels == ["happy", "sad"]
    with pytest.raises(ValueError, match="'t9' is not a member"):
        fit_ensemble("majority", tables, refs, tiebreak="t9")


def test_apply_names_a_missing_member_and_ignores_extra_tables():
    dev, refs = complementary(40, seed=7)
    fitted = fit_ensemble("soft", dev, refs)
    with pytest.raises(ValueError) as err:
        fitted.apply({"s1": dev["s1"]})
    assert "s2" in str(err.value)
    extra = {**dev, "t2": PredictionTable(["x"], ["sad"])}
    np.testing.assert_array_equal(fitted.apply(extra).probs, fitted.apply(dev).probs)


@pytest.mark.parametrize("method", COMBINER_METHODS)
def test_to_dict_from_dict_round_trip_gives_identical_outputs(method):
    dev, refs = complementary(80, seed=8)
    test, _ = complementary(50, seed=9)
    fitted = fit_ensemble(method, dev, refs, tiebreak="s2")
    back = FittedEnsemble.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert back == fitted
    expected, got = fitted.apply(test), back.apply(test)
    assert got.labels == expected.labels and list(got.label_set) == list(expected.label_set)
    np.testing.assert_array_equal(got.probs, expected.probs)


def test_from_dict_rejects_unknown_keys_and_bad_stackers():
    dev, refs = complementary(40, seed=10)
    data = fit_ensemble("stacking", dev, refs).to_dict()
    with pytest.raises(ValueError, match="unknown"):
        FittedEnsemble.from_dict({**data, "bias": 1})
    data["stacker"]["coef"] = data["stacker"]["coef"][:-1]
    with pytest.raises(ValueError, match="coef"):
        FittedEnsemble.from_dict(data)


def record_folds(monkeypatch):
    """Log (ids the combiner was fitted on, ids it was applied to) for each fit made in cross_fit."""
    folds = []
    real_fit, real_apply = combiners.fit_ensemble, FittedEnsemble.apply

    def fit(method, tables, references, **options):
        fitted = real_fit(method, tables, references, **options)
        fitted.fitted_on = {utt_id for utt_id, label in references.items() if label is not None}
        return fitted

    def apply(self, tables):
        out = real_apply(self, tables)
        folds.append((self.fitted_on, set(out.ids)))
        return out

    monkeypatch.setattr(combiners, "fit_ensemble", fit)
    monkeypatch.setattr(FittedEnsemble, "apply", apply)
    return folds


@pytest.mark.parametrize("by_speaker", [True, False])
def test_cross_fit_never_scores_a_row_with_a_combiner_that_saw_it(monkeypatch, by_speaker):
    dev, refs = complementary(60, seed=11)
    unlabelled = dev["s1"].ids[0]
    refs[unlabelled] = None
    speaker = {utt_id: f"spk{i % 4}" for i, utt_id in enumerate(dev["s1"].ids)}
    folds = record_folds(monkeypatch)
    out = cross_fit("stacking", dev, refs, speaker if by_speaker else None, n_folds=3)
    labelled = [utt_id for utt_id in dev["s1"].ids if refs[utt_id] is not None]
    assert out.ids == labelled  # the tables' id order, labelled rows only
    assert len(folds) == 3
    scored = [utt_id for _, held in folds for utt_id in held]
    assert sorted(scored) == sorted(labelled)  # each labelled row scored exactly once
    for fitted_on, held in folds:
        assert not fitted_on & held
        assert fitted_on | held == set(labelled)
        if by_speaker:  # GroupKFold: a speaker's rows all in one fold, none in its training
            assert not {speaker[i] for i in fitted_on} & {speaker[i] for i in held}


def test_speaker_folds_use_at_most_one_fold_per_speaker(monkeypatch):
    dev, refs = complementary(30, seed=12)
    speaker = {utt_id: ("a" if i < 20 else "b") for i, utt_id in enumerate(dev["s1"].ids)}
    folds = record_folds(monkeypatch)
    cross_fit("weighted", dev, refs, speaker, n_folds=5)
    assert sorted(len(held) for _, held in folds) == [10, 20]


def test_out_of_fold_stacking_cannot_memorise_noise():
    rng = np.random.default_rng(13)
    n = 40
    ids = [f"u{i:03d}" for i in range(n)]
    refs = {utt_id: CLASSES[c] for utt_id, c in zip(ids, rng.integers(0, 4, n))}
    tables = {}
    for name in ("s1", "s2", "t1", "t2", "st1"):
        probs = rng.dirichlet(np.ones(4), size=n)
        tables[name] = PredictionTable(ids, [CLASSES[i] for i in probs.argmax(axis=1)], probs, LabelSet(CLASSES))
    with warnings.catch_warnings():  # separable noise: lbfgs stops at its iteration limit, as intended here
        warnings.simplefilter("ignore")
        in_sample = fit_ensemble("stacking", tables, refs, C=1e4).apply(tables)
        out_of_fold = cross_fit("stacking", tables, refs, C=1e4)
    assert macro_f1(in_sample, refs) > 0.9
    assert macro_f1(out_of_fold, refs) < 0.5


def test_choose_ensemble_picks_the_best_cross_fitted_method():
    dev, refs = complementary(120, seed=14)
    speaker = {utt_id: f"spk{i % 2}" for i, utt_id in enumerate(dev["s1"].ids)}
    choice = choose_ensemble(dev, refs, speaker, tiebreak="s2")
    assert choice.method == "stacking"
    assert choice.final is choice.fitted["stacking"]
    assert set(choice.fitted) == set(COMBINER_METHODS) == set(choice.dev_tables) == set(choice.dev_scores)
    for method, table in choice.dev_tables.items():
        assert choice.dev_scores[method]["macro_f1"] == pytest.approx(macro_f1(table, refs))
    best = max(choice.dev_scores[m]["macro_f1"] for m in COMBINER_METHODS)
    assert choice.dev_scores["stacking"]["macro_f1"] == best
    assert choice.reason.startswith("stacking: highest cross-fitted dev macro-F1")
    assert "majority" in choice.reason and "120 dev utterances of 2 speakers" in choice.reason
    summary = json.loads(json.dumps(choice.to_dict()))
    assert summary["method"] == "stacking"
    assert set(summary["dev_scores"]["soft"]) == {"macro_f1", "ua", "wa"}
    assert FittedEnsemble.from_dict(summary["final"]) == choice.final


def test_choose_ensemble_gives_ties_to_the_method_listed_first():
    dev, refs = complementary(40, seed=15)
    same = {"s1": dev["s1"], "s1_copy": dev["s1"]}  # identical members: every vote is that member
    assert choose_ensemble(same, refs, methods=("majority", "soft", "best_member")).method == "majority"
    choice = choose_ensemble(same, refs, methods=("soft", "majority"))
    assert choice.method == "soft"
    assert "tied with majority" in choice.reason and "no speaker groups" in choice.reason


def test_bad_arguments_say_what_is_wrong():
    dev, refs = complementary(20, seed=16)
    with pytest.raises(ValueError, match="stacked.*majority"):
        fit_ensemble("stacked", dev, refs)
    with pytest.raises(ValueError, match="reference label"):
        fit_ensemble("weighted", dev, {})
    with pytest.raises(ValueError, match="metric"):
        choose_ensemble(dev, refs, metric="accuracy")
    with pytest.raises(ValueError, match="twice"):
        choose_ensemble(dev, refs, methods=("soft", "soft"))


def test_cli_fits_stacking_on_the_dev_split(tmp_path, capsys):
    from abhinaya.cli import main
    from abhinaya.manifest import Utterance, write_manifest
    from abhinaya.predictions import read_predictions, write_predictions

    dev, refs = complementary(160, seed=17)
    ids = dev["s1"].ids
    split = {utt_id: "dev" if i < 120 else "test" for i, utt_id in enumerate(ids)}
    manifest = write_manifest(tmp_path / "m.jsonl", [Utterance(i, label=refs[i], split=split[i]) for i in ids])
    paths = [str(write_predictions(tmp_path / f"{name}.csv", table)) for name, table in dev.items()]
    out = tmp_path / "stacked.csv"
    assert main(["ensemble", *paths, "-o", str(out), "--method", "stacking", "--fit-on", str(manifest)]) == 0
    assert "120" in capsys.readouterr().out
    stacked = read_predictions(out)
    assert stacked.ids == ids
    test_ids = [i for i in ids if split[i] == "test"]
    assert macro_f1(stacked.reorder(test_ids), refs) > 0.9

    assert main(["ensemble", *paths, "-o", str(out), "--method", "stacking"]) == 1
    assert "--fit-on" in capsys.readouterr().err
    wrong_split = ["--method", "best", "--fit-on", str(manifest), "--fit-split", "x"]
    assert main(["ensemble", *paths, "-o", str(out), *wrong_split]) == 1
    assert "'x'" in capsys.readouterr().err
