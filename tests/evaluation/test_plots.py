import numpy as np
import pytest

from abhinaya.evaluation.plots import (
    plot_confusion_matrix,
    plot_fold_scores,
    plot_training_curves,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("normalize", [True, False])
def test_writes_png(tmp_path, normalize):
    matrix = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 0]])  # last class absent: an all-zero row
    path = plot_confusion_matrix(
        matrix, ["angry", "sad", "happy"], tmp_path / "out" / "cm.png", normalize=normalize, title="dev"
    )
    assert path == tmp_path / "out" / "cm.png"
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 5000
    # no temporary file left behind
    assert [p.name for p in path.parent.iterdir()] == ["cm.png"]


def test_overwrites_existing_file(tmp_path):
    path = tmp_path / "cm.png"
    path.write_bytes(b"old")
    plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b"], path)
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_size_mismatch_raises(tmp_path):
    with pytest.raises(ValueError, match="labels"):
        plot_confusion_matrix(np.eye(3), ["a", "b"], tmp_path / "cm.png")
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(np.ones((2, 3)), ["a", "b"], tmp_path / "cm.png")
    assert not (tmp_path / "cm.png").exists()


def test_training_curves(tmp_path):
    history = [
        {"epoch": 1, "train_loss": 1.2, "macro_f1": 0.4, "ua": 0.45, "wa": 0.5, "kept": True},
        {"epoch": 2, "train_loss": 0.6, "macro_f1": 0.55, "ua": 0.5, "wa": 0.6, "kept": True},
        {"epoch": 3, "train_loss": 0.3, "macro_f1": 0.5, "ua": 0.5, "wa": 0.55, "kept": False},
    ]
    path = plot_training_curves(history, tmp_path / "run" / "curves.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert [p.name for p in path.parent.iterdir()] == ["curves.png"]
    # no dev split: the loss alone; an untrained member: the dev score alone
    no_dev = plot_training_curves([{"epoch": 1, "train_loss": 0.9}], tmp_path / "no_dev.png")
    assert no_dev.read_bytes().startswith(PNG_SIGNATURE)
    untrained = plot_training_curves([{"epoch": 0, "macro_f1": 0.3, "kept": True}], tmp_path / "untrained.png")
    assert untrained.read_bytes().startswith(PNG_SIGNATURE)
    averaged = [dict(row, averaged=row["epoch"] >= 2) for row in history]
    assert plot_training_curves(averaged, tmp_path / "averaged.png").read_bytes().startswith(PNG_SIGNATURE)
    with pytest.raises(ValueError, match="no epoch"):
        plot_training_curves([{"epoch": 1}], tmp_path / "empty.png")


def test_fold_scores(tmp_path):
    path = plot_fold_scores({"off": [0.7, 0.6], "on": [0.8, 0.75]}, ["fold1", "fold2"], tmp_path / "f.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="2 folds"):
        plot_fold_scores({"off": [0.7]}, ["fold1", "fold2"], tmp_path / "g.png")
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_fold_scores({}, ["fold1"], tmp_path / "h.png")
    assert not (tmp_path / "g.png").exists()
