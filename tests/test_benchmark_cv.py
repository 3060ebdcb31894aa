"""The fold plans of benchmarks/cv.py: test speakers never trained on, dev speakers held out or not."""

import importlib.util
from pathlib import Path

import pytest

from abhinaya.testing.dummies import make_dummy_ravdess

CV_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cv.py"


@pytest.fixture(scope="module")
def cv():
    spec = importlib.util.spec_from_file_location("benchmark_cv", CV_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ravdess(tmp_path_factory):
    root = tmp_path_factory.mktemp("ravdess")
    return make_dummy_ravdess(root, actors=range(1, 11), emotions=("01", "05"), statements=("01",), seconds=0.2)


def test_folds_hold_out_dev_from_the_next_fold(cv, ravdess):
    _, plans = cv.folds_for("ravdess", ravdess, 5)
    assert [p["test"] for p in plans] == [["01", "02"], ["03", "04"], ["05", "06"], ["07", "08"], ["09", "10"]]
    # Folds of two speakers: the last speaker of the next fold is dev; the last fold wraps round to the first.
    assert [p["dev"] for p in plans] == [["04"], ["06"], ["08"], ["10"], ["02"]]
    for plan in plans:
        assert not set(plan["dev"]) & set(plan["test"])


def test_no_dev_trains_on_every_speaker_outside_the_test_fold(cv, ravdess):
    _, plans = cv.folds_for("ravdess", ravdess, 5, dev=False)
    assert [p["dev"] for p in plans] == [[]] * 5
    assert [p["test"] for p in plans] == [p["test"] for p in cv.folds_for("ravdess", ravdess, 5)[1]]
