import numpy as np
import pytest

from abhinaya.labels import LabelSet
from abhinaya.predictions import (
    PredictionError,
    PredictionTable,
    read_predictions,
    table_from_probs,
    write_predictions,
)

LS = LabelSet(["angry", "sad", "neutral"])


def test_roundtrip_with_probabilities(tmp_path):
    table = table_from_probs(["b", "a"], np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]]), LS)
    assert table.labels == ["sad", "angry"]
    path = write_predictions(tmp_path / "p.csv", table)
    lines = path.read_text().splitlines()
    assert lines[0] == "FileName,EmoClass,prob_angry,prob_sad,prob_neutral"
    assert lines[1].startswith("b,sad,0.100000")
    back = read_predictions(path)
    assert back.ids == ["b", "a"] and back.labels == ["sad", "angry"]
    assert back.label_set == LS
    np.testing.assert_allclose(back.probs, table.probs)


def test_msp_format_letters_sorted(tmp_path):
    table = PredictionTable(["z1", "a1", "m1"], ["neutral", "angry", "sad"])
    path = write_predictions(tmp_path / "sub.csv", table, format="msp")
    assert path.read_text().splitlines() == ["FileName,EmoClass", "a1,A", "m1,S", "z1,N"]
    back = read_predictions(path)
    assert back.labels == ["angry", "sad", "neutral"]
    with pytest.raises(PredictionError, match="'calm'"):
        write_predictions(tmp_path / "bad.csv", PredictionTable(["x"], ["calm"]), format="msp")
    with pytest.raises(PredictionError, match="unknown prediction format"):
        write_predictions(tmp_path / "bad.csv", table, format="xml")


def test_reorder_names_missing_ids():
    table = PredictionTable(["a", "b"], ["sad", "sad"], source="s2.csv")
    assert table.reorder(["b", "a"]).ids == ["b", "a"]
    with pytest.raises(PredictionError, match=r"s2\.csv: no prediction for id\(s\) c"):
        table.reorder(["a", "c"])


def test_construction_checks():
    with pytest.raises(PredictionError, match="repeated id"):
        PredictionTable(["a", "a"], ["sad", "sad"])
    with pytest.raises(PredictionError, match="shape"):
        PredictionTable(["a"], ["sad"], np.zeros((1, 2)), LS)
    with pytest.raises(PredictionError, match="label set"):
        PredictionTable(["a"], ["sad"], np.zeros((1, 3)))


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "empty file"),
        ("id,label\na,sad\n", "header must start with FileName,EmoClass"),
        ("FileName,EmoClass,score\na,sad,1\n", "unexpected column"),
        ("FileName,EmoClass,prob_sad\na,sad\n", r"p\.csv:2: 2 fields, expected 3"),
        ("FileName,EmoClass\na,sad\na,sad\n", r"p\.csv:3: duplicate FileName 'a'"),
        ("FileName,EmoClass,prob_sad\na,happy,1\n", "not one of the table's classes"),
        ("FileName,EmoClass,prob_sad\na,sad,high\n", "must be numbers"),
    ],
)
def test_read_errors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "p.csv"
    path.write_text(content)
    with pytest.raises(PredictionError, match=message):
        read_predictions(path)


def test_read_accepts_byte_order_mark(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes("\ufeffFileName,EmoClass\na,sad\n".encode("utf-8"))
    assert read_predictions(path).labels == ["sad"]


def test_missing_file(tmp_path):
    with pytest.raises(PredictionError, match="not found"):
        read_predictions(tmp_path / "nope.csv")


def test_restrict_classes_renormalises_and_decides_among_the_chosen():
    from abhinaya.predictions import restrict_classes

    labels = LabelSet(["neutral", "calm", "happy", "sad", "angry"])
    probs = np.array([[0.1, 0.5, 0.2, 0.1, 0.1],    # calm wins overall; happy among the four
                      [0.0, 1.0, 0.0, 0.0, 0.0]])   # all mass outside: uniform over the four
    table = table_from_probs(["a", "b"], probs, labels, source="t.csv")
    out = restrict_classes(table, ["Anger", "sad", "joy", "neutral"])
    assert list(out.label_set) == ["neutral", "happy", "sad", "angry"]  # the model's order, synonyms mapped
    np.testing.assert_allclose(out.probs[0], [0.2, 0.4, 0.2, 0.2])
    np.testing.assert_allclose(out.probs[1], [0.25] * 4)
    assert out.labels[0] == "happy" and out.ids == ["a", "b"]


@pytest.mark.parametrize("classes, message", [
    (["happy", "boredom"], "the model has no class 'boredom'"),
    (["happy", "thunder"], "unknown emotion label 'thunder'"),
    (["happy", "joy"], "at least two classes"),
])
def test_restrict_classes_names_what_is_wrong(classes, message):
    from abhinaya.predictions import PredictionError, restrict_classes

    table = table_from_probs(["a"], np.array([[0.5, 0.5]]), LabelSet(["happy", "sad"]), source="t.csv")
    with pytest.raises(PredictionError, match=message):
        restrict_classes(table, classes)
    with pytest.raises(PredictionError, match="labels only"):
        restrict_classes(PredictionTable(["a"], ["happy"], source="v.csv"), ["happy", "sad"])
