import csv

import numpy as np
import pytest

from abhinaya.evaluation.ensemble import (
    ENSEMBLE_METHODS,
    align_tables,
    combine,
    ensemble_label_set,
    majority_vote,
    soft_vote,
    weighted_vote,
)
from abhinaya.labels import LabelSet
from abhinaya.predictions import (
    PredictionError,
    PredictionTable,
    read_predictions,
    write_predictions,
)

MEMBERS = ("s1", "s2", "t1", "t2", "st1")


def table(ids, labels, probs=None, classes=None, source=None):
    label_set = LabelSet(classes) if classes is not None else None
    return PredictionTable(list(ids), list(labels), probs, label_set, source)


def abhinaya_members(votes, probs=None, classes=None):
    """Tables named like the ABHINAYA members; ``votes[m]`` are member m's labels for u0, u1, ..."""
    return [
        table([f"u{i}" for i in range(len(member_votes))], member_votes,
              None if probs is None else probs[m], classes, f"runs/{MEMBERS[m]}.csv")
        for m, member_votes in enumerate(votes)
    ]


def test_methods_are_listed():
    assert ENSEMBLE_METHODS == ("majority", "weighted", "soft")


def test_majority_two_against_one():
    ids = ["a", "b"]
    members = [
        table(ids, ["happy", "sad"], source="m1"),
        table(ids, ["happy", "angry"], source="m2"),
        table(ids, ["sad", "angry"], source="m3"),
    ]
    result = majority_vote(members)
    assert result.ids == ids
    assert result.labels == ["happy", "angry"]
    assert result.source == "majority"
    # Label-only members contribute the labels they use, in canonical order.
    assert list(result.label_set) == ["sad", "happy", "angry"]
    np.testing.assert_allclose(result.probs, [[1 / 3, 2 / 3, 0], [1 / 3, 0, 2 / 3]])


def test_abhinaya_tie_2_2_1_goes_to_tiebreak_member():
    # S1 happy, S2 sad, T1 happy, T2 sad, ST1 neutral: happy and sad tie 2-2.
    members = abhinaya_members([["happy"], ["sad"], ["happy"], ["sad"], ["neutral"]])
    assert majority_vote(members, tiebreak=1).labels == ["sad"]
    assert majority_vote(members, tiebreak="s2").labels == ["sad"]
    # Without a tie-break member (label-only tables): the earliest member's tied vote.
    assert majority_vote(members).labels == ["happy"]
    np.testing.assert_allclose(majority_vote(members, tiebreak=1).probs.sum(axis=1), [1.0])


def test_tie_without_the_tiebreak_member_among_tied_labels():
    # S2 votes neutral alone; happy (S1, T1) and sad (T2, ST1) tie.
    votes = [["happy"], ["neutral"], ["happy"], ["sad"], ["sad"]]
    members = abhinaya_members(votes)
    assert majority_vote(members, tiebreak="s2").labels == ["happy"]

    # With probabilities on every member, the tied label with the highest summed probability wins.
    classes = ["happy", "sad", "neutral"]
    probs = [
        [[0.40, 0.35, 0.25]],
        [[0.10, 0.30, 0.60]],
        [[0.40, 0.35, 0.25]],
        [[0.05, 0.90, 0.05]],
        [[0.05, 0.90, 0.05]],
    ]
    members = abhinaya_members(votes, np.array(probs), classes)
    result = majority_vote(members, tiebreak="s2")
    assert result.labels == ["sad"]
    np.testing.assert_allclose(result.probs, [[0.4, 0.4, 0.2]])


def test_complete_disagreement_goes_to_tiebreak_member():
    members = abhinaya_members([["happy"], ["sad"], ["angry"], ["neutral"], ["fear"]])
    for member in range(5):
        assert majority_vote(members, tiebreak=member).labels == [members[member].labels[0]]
    result = majority_vote(members, tiebreak="s2")
    assert result.labels == ["sad"]
    np.testing.assert_allclose(result.probs, [[0.2] * 5])


def test_tiebreak_by_name_and_path(tmp_path):
    ids = ["x"]
    sources = [str(tmp_path / f"{name}.csv") for name in ("s1", "s2", "t1", "t2")]
    members = [table(ids, [label], source=source) for label, source in zip(["happy", "sad", "angry", "neutral"], sources)]
    assert majority_vote(members, tiebreak="t1").labels == ["angry"]
    assert majority_vote(members, tiebreak=sources[3]).labels == ["neutral"]
    assert majority_vote(members, tiebreak=tmp_path / "s2.csv").labels == ["sad"]
    with pytest.raises(ValueError) as err:
        majority_vote(members, tiebreak="wavlm")
    for name in ("s1", "s2", "t1", "t2", "wavlm"):
        assert name in str(err.value)
    with pytest.raises(ValueError, match="out of range"):
        majority_vote(members, tiebreak=4)
    # an index as the command line gives it
    assert majority_vote(members, tiebreak="2").labels == ["angry"]
    with pytest.raises(ValueError, match="out of range"):
        majority_vote(members, tiebreak="4")


def test_tiebreak_path_given_another_way_than_the_tables(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    members = [table(["x"], [label], source=f"./{name}.csv") for label, name in zip(["happy", "sad"], ["a", "b"])]
    assert majority_vote(members, tiebreak=str(tmp_path / "b.csv")).labels == ["sad"]
    assert majority_vote(members, tiebreak="b.csv").labels == ["sad"]


def test_tiebreak_stem_shared_by_two_members_is_ambiguous(tmp_path):
    members = [
        table(["x"], ["happy"], source=str(tmp_path / "a" / "dev.csv")),
        table(["x"], ["sad"], source=str(tmp_path / "b" / "dev.csv")),
    ]
    with pytest.raises(ValueError, match="several members"):
        majority_vote(members, tiebreak="dev")
    assert majority_vote(members, tiebreak=str(tmp_path / "b" / "dev.csv")).labels == ["sad"]


def test_tie_broken_by_summed_probability_without_tiebreak_member():
    classes = ["angry", "sad"]
    members = [
        table(["u"], ["angry"], [[0.55, 0.45]], classes, "m1"),
        table(["u"], ["sad"], [[0.10, 0.90]], classes, "m2"),
    ]
    assert majority_vote(members).labels == ["sad"]


def test_weighted_vote_heavy_member_overrides_two_light_ones():
    ids = ["a", "b"]
    members = [
        table(ids, ["angry", "happy"], source="heavy"),
        table(ids, ["sad", "happy"], source="light1"),
        table(ids, ["sad", "sad"], source="light2"),
    ]
    assert majority_vote(members).labels == ["sad", "happy"]
    result = weighted_vote(members, [3.0, 1.0, 1.0])
    assert result.labels == ["angry", "happy"]
    assert result.source == "weighted"
    assert list(result.label_set) == ["angry", "happy", "sad"]
    np.testing.assert_allclose(result.probs, [[0.6, 0.0, 0.4], [0.0, 0.8, 0.2]])


def test_weighted_vote_float_tie_is_a_tie():
    members = abhinaya_members([["happy"], ["happy"], ["sad"]])
    # 0.1 + 0.2 != 0.3 in floating point, yet the vote counts as tied, so the tie-break member decides.
    assert weighted_vote(members, [0.1, 0.2, 0.3], tiebreak=2).labels == ["sad"]
    assert weighted_vote(members, [0.1, 0.2, 0.3], tiebreak=0).labels == ["happy"]


@pytest.mark.parametrize(
    "weights, message",
    [([1.0, 2.0], "weight"), ([1.0, -1.0, 1.0], "non-negative"), ([0, 0, 0], "zero"), ([1, float("nan"), 1], "finite")],
)
def test_weighted_vote_rejects_bad_weights(weights, message):
    members = abhinaya_members([["happy"], ["happy"], ["sad"]])
    with pytest.raises(ValueError, match=message):
        weighted_vote(members, weights)


def test_soft_vote_is_the_mean_of_probabilities():
    classes = ["angry", "sad", "happy"]
    p1 = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    p2 = np.array([[0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    p3 = np.array([[0.6, 0.3, 0.1], [0.2, 0.6, 0.2]])
    members = [
        table(["a", "b"], ["angry", "happy"], p1, classes, "m1"),
        table(["a", "b"], ["sad", "happy"], p2, classes, "m2"),
        table(["a", "b"], ["angry", "sad"], p3, classes, "m3"),
    ]
    result = soft_vote(members)
    expected = (p1 + p2 + p3) / 3
    np.testing.assert_allclose(result.probs, expected)
    assert result.labels == ["sad", "happy"]
    assert result.source == "soft"

    weighted = soft_vote(members, weights=[2, 1, 1])
    np.testing.assert_allclose(weighted.probs, (2 * p1 + p2 + p3) / 4)
    assert weighted.labels == ["angry", "happy"]


def test_soft_vote_over_different_label_sets():
    speech = table(["u1", "u2"], ["angry", "sad"], [[0.7, 0.3], [0.4, 0.6]], ["angry", "sad"], "speech")
    text = table(["u2", "u1"], ["happy", "sad"], [[0.1, 0.9], [0.8, 0.2]], ["sad", "happy"], "text")
    result = soft_vote([speech, text])
    assert list(result.label_set) == ["angry", "sad", "happy"]
    assert result.ids == ["u1", "u2"]
    np.testing.assert_allclose(result.probs, [[0.35, 0.55, 0.10], [0.20, 0.35, 0.45]])
    assert result.labels == ["sad", "happy"]
    np.testing.assert_allclose(result.probs.sum(axis=1), [1.0, 1.0])


def test_ensemble_label_set_is_the_ordered_union():
    a = table(["u"], ["sad"], [[0.2, 0.8]], ["neutral", "sad"])
    b = table(["u"], ["happy"])
    c = table(["u"], ["angry"], [[0.5, 0.5]], ["angry", "neutral"])
    assert list(ensemble_label_set([a, b, c])) == ["neutral", "sad", "happy", "angry"]


def test_align_tables_follows_the_first_table():
    first = table(["c", "a", "b"], ["sad", "happy", "angry"], source="first")
    second = table(["a", "b", "c"], ["happy", "angry", "neutral"], source="second")
    ids, aligned = align_tables([first, second])
    assert ids == ["c", "a", "b"]
    assert aligned[1].labels == ["neutral", "happy", "angry"]
    assert aligned[1].source == "second"


def test_missing_id_names_the_id_and_the_table():
    first = table(["a", "b", "utt_0042"], ["sad", "sad", "sad"], source="s1.csv")
    second = table(["a", "b"], ["sad", "sad"], source="t2.csv")
    with pytest.raises(PredictionError) as err:
        majority_vote([first, second])
    assert "utt_0042" in str(err.value)
    assert "t2.csv" in str(err.value)


def test_extra_id_in_a_later_table_raises():
    first = table(["a", "b"], ["sad", "sad"], source="s1.csv")
    second = table(["a", "b", "utt_extra"], ["sad", "sad", "happy"], source="st1.csv")
    with pytest.raises(PredictionError) as err:
        align_tables([first, second])
    assert "utt_extra" in str(err.value)
    assert "s1.csv" in str(err.value)
    with pytest.raises(PredictionError, match="utt_extra"):
        soft_vote([
            table(["a"], ["sad"], [[1.0]], ["sad"], "s1.csv"),
            table(["a", "utt_extra"], ["sad", "sad"], [[1.0], [1.0]], ["sad"], "s2.csv"),
        ])


def test_repeated_id_raises():
    with pytest.raises(PredictionError, match="dup.csv: repeated id"):
        majority_vote([table(["a", "a"], ["sad", "happy"], source="dup.csv"), table(["a"], ["sad"])])


def test_label_only_tables_fail_soft_vote_with_a_clear_message():
    with_probs = table(["a"], ["sad"], [[0.3, 0.7]], ["happy", "sad"], "s2.csv")
    labels_only = table(["a"], ["happy"], source="t1.csv")
    with pytest.raises(PredictionError) as err:
        soft_vote([with_probs, labels_only])
    assert "t1.csv" in str(err.value)
    assert "labels only" in str(err.value)


def test_combine_dispatches_and_rejects_unknown_methods():
    classes = ["happy", "sad"]
    members = [
        table(["a"], ["happy"], [[0.6, 0.4]], classes, "m1"),
        table(["a"], ["sad"], [[0.1, 0.9]], classes, "m2"),
        table(["a"], ["happy"], [[0.55, 0.45]], classes, "m3"),
    ]
    assert combine(members, "majority").labels == ["happy"]
    assert combine(members, "weighted", weights=[1, 5, 1]).labels == ["sad"]
    assert combine(members, "soft").labels == ["sad"]
    with pytest.raises(ValueError) as err:
        combine(members, "stacking")
    assert "stacking" in str(err.value)
    assert "majority" in str(err.value)
    with pytest.raises(ValueError, match="weights"):
        combine(members, "weighted")
    with pytest.raises(ValueError, match="weighted"):
        combine(members, "majority", weights=[1, 1, 1])
    with pytest.raises(ValueError, match="tie"):
        combine(members, "soft", tiebreak=0)
    with pytest.raises(ValueError, match="no prediction tables"):
        combine([], "majority")


def test_round_trip_through_csv_files(tmp_path):
    classes = ["angry", "sad", "happy", "neutral"]
    ids = ["utt3", "utt1", "utt2"]
    rng = np.random.default_rng(0)
    paths = []
    for m, name in enumerate(MEMBERS):
        probs = rng.dirichlet(np.ones(len(classes)), size=len(ids))
        labels = [classes[i] for i in probs.argmax(axis=1)]
        member = PredictionTable(ids, labels, probs, LabelSet(classes), None)
        order = np.roll(np.arange(len(ids)), m)
        paths.append(write_predictions(tmp_path / f"{name}.csv", member.reorder([ids[i] for i in order])))
    members = [read_predictions(path) for path in paths]
    result = majority_vote(members, tiebreak=str(paths[1]))
    assert result.ids == members[0].ids

    votes = np.array([[classes.index(label) for label in m.reorder(result.ids).labels] for m in members])
    for row, label in enumerate(result.labels):
        counts = np.bincount(votes[:, row], minlength=len(classes))
        assert counts[classes.index(label)] == counts.max()
        if (counts == counts.max()).sum() > 1 and counts[votes[1, row]] == counts.max():
            assert label == classes[votes[1, row]]

    written = write_predictions(tmp_path / "majority.csv", result)
    back = read_predictions(written)
    assert back.labels == result.labels
    np.testing.assert_allclose(back.probs, result.probs, atol=1e-6)

    soft = soft_vote(members)
    expected = np.mean([m.reorder(soft.ids).probs for m in members], axis=0)
    np.testing.assert_allclose(soft.probs, expected)


def test_msp_output_of_an_ensemble_is_sorted_with_letter_codes(tmp_path):
    ids = ["MSP-PODCAST_0003_0001", "MSP-PODCAST_0001_0002", "MSP-PODCAST_0002_0001"]
    members = [
        table(ids, ["angry", "neutral", "contempt"], source="s1"),
        table(ids, ["angry", "happy", "surprise"], source="s2"),
        table(ids, ["sad", "happy", "surprise"], source="t1"),
    ]
    result = majority_vote(members, tiebreak="s2")
    path = write_predictions(tmp_path / "submission.csv", result, format="msp")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["FileName", "EmoClass"]
    assert rows[1:] == [
        ["MSP-PODCAST_0001_0002", "H"],
        ["MSP-PODCAST_0002_0001", "U"],
        ["MSP-PODCAST_0003_0001", "A"],
    ]
    assert read_predictions(path).reorder(ids).labels == result.labels


def test_empty_tables_give_an_empty_result():
    members = [table([], [], source="a"), table([], [], source="b")]
    assert len(majority_vote(members)) == 0
    classes = ["sad", "happy"]
    empty = [table([], [], np.zeros((0, 2)), classes, "a"), table([], [], np.zeros((0, 2)), classes, "b")]
    assert len(soft_vote(empty)) == 0
    assert len(majority_vote(empty)) == 0
