"""``abhinaya predict --classes``: a model decides among the classes a corpus uses."""

import numpy as np

from abhinaya.cli import main
from abhinaya.predictions import read_predictions


def test_predict_classes_keeps_the_chosen_columns_renormalised(tmp_path, speaker_norm_run, corpus, capsys):
    files = sorted((corpus / "Actor_05").glob("*.wav"))[:8]
    full, four = tmp_path / "full.csv", tmp_path / "four.csv"
    assert main(["predict", str(speaker_norm_run), *map(str, files), "-o", str(full), "--no-progress"]) == 0
    assert main(["predict", str(speaker_norm_run), *map(str, files), "-o", str(four), "--no-progress",
                 "--classes", "neutral,happy,sad,anger"]) == 0
    a, b = read_predictions(full), read_predictions(four)
    assert list(b.label_set) == ["neutral", "happy", "sad", "angry"] and a.ids == b.ids
    kept = a.label_set.encode_many(list(b.label_set))
    expected = a.probs[:, kept] / a.probs[:, kept].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(b.probs, expected, atol=2e-6)  # the CSV keeps six decimals
    assert b.labels == [b.label_set.decode(i) for i in expected.argmax(axis=1)]


def test_predict_classes_are_checked_before_the_model_loads(tmp_path, speaker_norm_run, corpus, capsys):
    file = sorted((corpus / "Actor_05").glob("*.wav"))[0]
    assert main(["predict", str(speaker_norm_run), str(file), "-o", str(tmp_path / "x.csv"),
                 "--classes", "happy,boredom"]) == 1
    err = capsys.readouterr().err
    assert "--classes" in err and "the model has no class 'boredom'" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing predicted, nothing written
