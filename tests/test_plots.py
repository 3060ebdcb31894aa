import numpy as np
import pytest

from abhinaya.plots import plot_confusion_matrix

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
