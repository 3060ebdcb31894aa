import numpy as np
import pytest

from abhinaya.evaluation.plots import (
    plot_confusion_matrix,
    plot_fold_scores,
    plot_pairwise_matrix,
    plot_per_class_f1,
    plot_system_scores,
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


def test_confusion_matrix_dpi(tmp_path):
    from PIL import Image

    small = plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b"], tmp_path / "small.png", dpi=50)
    large = plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b"], tmp_path / "large.png", dpi=100)
    with Image.open(small) as a, Image.open(large) as b:
        assert b.size[0] == pytest.approx(2 * a.size[0], abs=2)


def test_system_scores(tmp_path):
    scores = {
        "s1": {"macro_f1": 0.5, "ua": 0.55, "wa": 0.6},
        "s2": {"macro_f1": 0.6, "ua": 0.6, "wa": 0.62},
        "soft": {"macro_f1": 0.7, "ua": 0.72, "wa": 0.71},
        "a$b": {"macro_f1": 0.65, "ua": 0.6, "wa": 0.7},  # a dollar sign is shown literally, not as mathtext
    }
    path = plot_system_scores(scores, tmp_path / "s.png", ensembles=["soft", "a$b"], chosen="soft", title="test")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]
    with pytest.raises(ValueError, match="'s1' has no score for wa"):
        plot_system_scores({"s1": {"macro_f1": 0.5, "ua": 0.5}}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_system_scores({}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.parametrize("systems,classes", [(3, 4), (12, 10)])
def test_per_class_f1(tmp_path, systems, classes):
    from PIL import Image

    labels = [f"class{c}" for c in range(classes)]
    rng = np.random.default_rng(0)
    f1 = {f"system{s}": dict(zip(labels, rng.uniform(size=classes))) for s in range(systems)}
    path = plot_per_class_f1(
        f1, labels, tmp_path / "pc.png", ensembles=["system0"], chosen="system1",
        support={label: 10 for label in labels}, title="per class",
    )
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    with Image.open(path) as image:  # 120 bars spread over rows, not one very wide strip
        assert image.size[0] <= 1600
    with pytest.raises(ValueError, match="no F1 for class"):
        plot_per_class_f1({"a": {"x": 0.5}}, ["x", "y"], tmp_path / "bad.png")


def test_pairwise_matrix_with_undefined_cells(tmp_path):
    values = np.array([[1.0, 0.2, np.nan], [0.2, 1.0, np.nan], [np.nan, np.nan, np.nan]])
    path = plot_pairwise_matrix(values, ["a", "b", "a_long_member_name"], tmp_path / "pm.png", vmin=-1.0,
                                vmax=1.0, cmap="RdBu_r", colour_label="r", title="errors")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    with pytest.raises(ValueError, match="square"):
        plot_pairwise_matrix(np.ones((2, 3)), ["a", "b"], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="names"):
        plot_pairwise_matrix(np.ones((2, 2)), ["a"], tmp_path / "bad.png")
