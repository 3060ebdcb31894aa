import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from abhinaya.evaluation.metrics import (
    classification_report,
    confusion_matrix,
    format_metrics_table,
)

LABELS = ["angry", "sad", "happy", "neutral", "fear"]


def _random_case(seed, num, absent_true=None, never_pred=None, only=None):
    rng = np.random.default_rng(seed)
    true_pool = [l for l in LABELS if l != absent_true] if only is None else [only]
    pred_pool = [l for l in LABELS if l != never_pred]
    y_true = [str(t) for t in rng.choice(true_pool, size=num)]
    # mostly right, sometimes a random guess
    y_pred = [t if rng.random() < 0.5 and t in pred_pool else str(rng.choice(pred_pool)) for t in y_true]
    return y_true, y_pred


CASES = {
    "balanced": dict(seed=0, num=60),
    "small": dict(seed=1, num=7),
    "absent_from_true": dict(seed=2, num=40, absent_true="fear"),
    "never_predicted": dict(seed=3, num=40, never_pred="sad"),
    "absent_and_never_predicted": dict(seed=4, num=50, absent_true="happy", never_pred="angry"),
    "single_true_class": dict(seed=5, num=12, only="neutral"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_sklearn(case):
    y_true, y_pred = _random_case(**CASES[case])
    report = classification_report(y_true, y_pred, LABELS)

    kw = dict(labels=LABELS, zero_division=0)
    assert report["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro", **kw))
    assert report["weighted_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="weighted", **kw))
    assert report["wa"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    with warnings.catch_warnings():
        # sklearn warns about classes predicted but absent from y_true
        warnings.simplefilter("ignore")
        expected_ua = skm.balanced_accuracy_score(y_true, y_pred)
    assert report["ua"] == pytest.approx(expected_ua)

    precision, recall, f1, support = skm.precision_recall_fscore_support(y_true, y_pred, **kw)
    for i, label in enumerate(LABELS):
        per = report["per_class"][label]
        assert per["precision"] == pytest.approx(precision[i])
        assert per["recall"] == pytest.approx(recall[i])
        assert per["f1"] == pytest.approx(f1[i])
        assert per["support"] == support[i]
    assert report["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred, labels=LABELS).tolist()
    assert report["labels"] == LABELS
    assert report["num_utterances"] == len(y_true)
    for key in ("macro_f1", "ua", "wa", "weighted_f1"):
        assert type(report[key]) is float


def test_hand_checked_example():
    labels = ["a", "b", "c"]
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    report = classification_report(y_true, y_pred, labels)
    # a: P 2/2, R 2/3, F1 4/5;  b: P 1/2, R 1/2, F1 1/2;  c: P 1/2, R 1/1, F1 2/3
    assert report["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert report["per_class"]["b"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert report["per_class"]["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert report["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert report["ua"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    assert report["wa"] == pytest.approx(4 / 6)
    assert report["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_absent_class_counts_in_macro_f1_but_not_ua():
    report = classification_report(["a", "b"], ["a", "b"], ["a", "b", "c"])
    assert report["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["macro_f1"] == pytest.approx(2 / 3)
    assert report["ua"] == pytest.approx(1.0)
    assert report["wa"] == pytest.approx(1.0)


def test_unknown_label_raises_naming_it():
    with pytest.raises(ValueError, match="'joy'"):
        classification_report(["a", "joy"], ["a", "a"], ["a", "b"])
    with pytest.raises(ValueError, match="'x'"):
        classification_report(["a", "b"], ["a", "x"], ["a", "b"])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="empty"):
        classification_report([], [], ["a", "b"])
    with pytest.raises(ValueError, match="entries"):
        classification_report(["a"], ["a", "b"], ["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        classification_report(["a"], ["a"], ["a", "a"])


def test_confusion_matrix_indices():
    matrix = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 4)
    assert matrix.shape == (4, 4)
    assert matrix.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    assert np.array_equal(matrix, skm.confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], labels=range(4)))
    assert confusion_matrix([], [], 2).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="index 3"):
        confusion_matrix([0, 3], [0, 1], 3)


def test_format_metrics_table():
    s1 = classification_report(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b"])
    t2 = classification_report(["a", "b"], ["a", "b"], ["a", "b"])
    table = format_metrics_table({"S1": s1, "T2-long-name": t2})
    lines = table.splitlines()
    for column in ("macro-F1", "UA", "WA", "weighted-F1", "N"):
        assert column in lines[0]
    s1_line = next(line for line in lines if line.startswith("S1 "))
    assert f"{100 * s1['macro_f1']:.2f}" in s1_line  # 73.33
    assert "75.00" in s1_line and s1_line.split()[-1] == "4"
    assert any(line.startswith("T2-long-name") and "100.00" in line for line in lines)
    # rows aligned: every data row ends at the same column as the header
    assert len({len(line) for line in lines[:4]}) == 1
    fractions = format_metrics_table({"S1": s1}, percent=False, digits=3)
    assert "0.733" in fractions
