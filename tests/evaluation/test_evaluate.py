import numpy as np
import pytest

from abhinaya.evaluation.evaluate import EvaluationError, evaluate_predictions
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance
from abhinaya.predictions import PredictionTable, table_from_probs

UTTS = [
    Utterance("a", label="sad", split="test"),
    Utterance("b", label="happy", split="test"),
    Utterance("c", label="sad", split="test"),
    Utterance("d", label="angry", split="train"),
    Utterance("e", label=None, split="test"),
]


def test_scores_predicted_labelled_ids_over_the_full_label_set():
    ls = LabelSet(["angry", "sad", "happy", "fear"])
    probs = np.array([[0, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=float)
    table = table_from_probs(["a", "b", "c", "e"], probs, ls)
    report = evaluate_predictions(table, UTTS)
    assert report["labels"] == ["angry", "sad", "happy", "fear"]
    assert report["num_utterances"] == 3
    assert report["num_unlabelled_skipped"] == 1
    assert report["wa"] == pytest.approx(2 / 3)
    # sad F1 = 2*2/(2*2+1) = 0.8; angry, happy, fear 0 -> macro over 4 classes
    assert report["macro_f1"] == pytest.approx(0.8 / 4)
    assert report["ua"] == pytest.approx((1.0 + 0.0) / 2)


def test_split_requires_every_labelled_utterance():
    table = PredictionTable(["a", "b"], ["sad", "happy"])
    with pytest.raises(EvaluationError, match="no prediction for id.*c"):
        evaluate_predictions(table, UTTS, split="test")
    full = PredictionTable(["a", "b", "c"], ["sad", "happy", "sad"])
    assert evaluate_predictions(full, UTTS, split="test")["macro_f1"] == pytest.approx(1.0)
    with pytest.raises(EvaluationError, match="no labelled utterance in split 'dev'"):
        evaluate_predictions(full, UTTS, split="dev")


def test_unknown_ids_and_nothing_to_score():
    with pytest.raises(EvaluationError, match="not in the manifest: zz"):
        evaluate_predictions(PredictionTable(["zz"], ["sad"]), UTTS)
    with pytest.raises(EvaluationError, match="none of the predicted ids"):
        evaluate_predictions(PredictionTable(["e"], ["sad"]), UTTS)


def test_evaluate_says_how_many_labelled_utterances_were_not_predicted(tmp_path, capsys):
    from abhinaya.cli import main
    from abhinaya.manifest import Utterance, write_manifest

    manifest = write_manifest(tmp_path / "m.jsonl", [
        Utterance(id=f"u{i}", audio=None, label=("angry", "sad")[i % 2], split="test") for i in range(6)
    ])
    (tmp_path / "p.csv").write_text("FileName,EmoClass\nu0,angry\nu1,sad\n")
    assert main(["evaluate", str(tmp_path / "p.csv"), str(manifest), "--plot", str(tmp_path / "c.png")]) == 0
    captured = capsys.readouterr()
    assert '"num_labelled_not_predicted": 4' in captured.out
    assert "4 labelled utterance(s)" in captured.err


def test_an_empty_id_in_a_prediction_table_names_its_line(tmp_path):
    import pytest

    from abhinaya.predictions import PredictionError, read_predictions

    (tmp_path / "p.csv").write_text("FileName,EmoClass\nu0,angry\n,sad\n")
    with pytest.raises(PredictionError, match=r"p.csv:3: empty FileName"):
        read_predictions(tmp_path / "p.csv")
