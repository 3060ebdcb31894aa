"""Model selection and the saved state of a run, without training."""

import json

import pytest
import torch

from abhinaya.recipes import TrainConfig
from abhinaya.train.selection import (
    averages_epoch,
    running_mean,
    select_epoch,
    should_stop,
)
from abhinaya.train.state import (
    Progress,
    TrainingError,
    load_saved_state,
    write_text_atomic,
)


class WholeModel:
    saves_partial_state = False

    def saved_state(self, model):
        return model.state_dict()


class HeadOnly:
    """A member that saves only its trained part (here: the second layer)."""

    saves_partial_state = True

    def saved_state(self, model):
        return {k: v for k, v in model.state_dict().items() if k.startswith("1.")}


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))


def test_the_weight_average_loads_strictly():
    model, other = _model(), _model()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    load_saved_state(WholeModel(), model, other.state_dict(), "average")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))

    state = other.state_dict()
    with pytest.raises(TrainingError, match=r"missing keys \['0.bias'\]"):
        load_saved_state(WholeModel(), model, {k: v for k, v in state.items() if k != "0.bias"}, "average")
    with pytest.raises(TrainingError, match="unexpected keys"):
        load_saved_state(WholeModel(), model, {**state, "2.weight": torch.zeros(1)}, "average")
    with pytest.raises(TrainingError, match="shape mismatch"):
        load_saved_state(WholeModel(), model, {**state, "0.bias": torch.zeros(5)}, "average")

    # a member that saves part of the model: exactly that part, no more and no less
    head = {k: v for k, v in state.items() if k.startswith("1.")}
    fresh = _model()
    load_saved_state(HeadOnly(), fresh, head, "average")
    assert torch.equal(fresh[1].weight, other[1].weight) and torch.equal(fresh[0].weight, _model()[0].weight)
    with pytest.raises(TrainingError, match="missing keys"):
        load_saved_state(HeadOnly(), fresh, {"1.weight": head["1.weight"]}, "average")
    with pytest.raises(TrainingError, match="unexpected keys"):
        load_saved_state(HeadOnly(), fresh, state, "average")


def test_selection_keeps_the_best_and_stops_early():
    progress = Progress()
    assert select_epoch(progress, 1, 0.30, "best") == (True, True)
    assert select_epoch(progress, 2, 0.25, "best") == (False, False)
    assert (progress.best_epoch, progress.kept_epoch, progress.bad_epochs) == (1, 1, 1)
    assert not should_stop(progress, 2) and not should_stop(progress, 0)
    assert select_epoch(progress, 3, 0.20, "last") == (False, True)
    assert progress.kept_epoch == 3 and should_stop(progress, 2)
    no_dev = Progress()
    assert select_epoch(no_dev, 1, None, "best") == (True, True) and no_dev.best_score == -1.0
    cfg = TrainConfig(epochs=4, keep="average", average_epochs=2)
    assert [averages_epoch(cfg, e) for e in range(4)] == [False, False, True, True]
    mean = running_mean(None, {"w": torch.tensor([2.0]), "n": torch.tensor(1)}, 1)
    mean = running_mean(mean, {"w": torch.tensor([4.0]), "n": torch.tensor(2)}, 2)
    assert mean["w"].item() == 3.0 and mean["n"].item() == 2


def test_progress_keeps_the_checkpoint_format():
    # the JSON a checkpoint holds: the same keys, in the same order, as runs written before
    keys = ["epoch", "batches_done", "global_step", "best_score", "best_epoch", "kept_epoch", "bad_epochs",
            "averaged", "loss_sum", "loss_count"]
    progress = Progress(epoch=2, global_step=12, best_score=0.5)
    assert list(json.loads(progress.to_json())) == keys
    assert Progress.from_json(progress.to_json()) == progress


def test_text_files_are_written_atomically(tmp_path):
    path = write_text_atomic(tmp_path / "sub" / "summary.json", "{}\n")
    assert path.read_text() == "{}\n" and [p.name for p in path.parent.iterdir()] == ["summary.json"]
