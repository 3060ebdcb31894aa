"""A miniature RAVDESS and one tiny S1 run trained on it with per-speaker normalisation, shared by the prediction
tests (training it once keeps them fast)."""

import pytest
import yaml

from abhinaya.runs import load_recipe
from abhinaya.testing.dummies import make_dummy_ravdess
from abhinaya.train import loop as training


def write_speaker_norm_recipe(path, tiny_whisper_dir, root, **model):
    recipe = {
        "member": "s1",
        "data": {"corpus": "ravdess", "root": str(root), "dev_speakers": ["04"], "test_speakers": ["05"]},
        "audio": {"train_crop_seconds": None},  # whole 1 s files: clean vectors like the ones predicted
        "model": {"encoder": str(tiny_whisper_dir), "attention_dim": 8, "head_hidden": 16, "freeze_layers": 1,
                  "head_norm": "running", **model},
        "train": {"epochs": 1, "batch_size": 8, "head_lr": 5e-3, "encoder_lr": 1e-3, "progress": False},
        "predict": {"speaker_norm": True, "speaker_norm_prior": 2.0},
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="session")
def speaker_norm_recipe():
    """``write(path, tiny_whisper_dir, root, **model)``: a tiny S1 recipe with ``predict.speaker_norm`` on."""
    return write_speaker_norm_recipe


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    return make_dummy_ravdess(tmp_path_factory.mktemp("corpus") / "ravdess", actors=(1, 2, 3, 4, 5))


@pytest.fixture(scope="session")
def speaker_norm_run(tmp_path_factory, tiny_whisper_dir, corpus):
    """A trained S1 run folder (RAVDESS actors 01-03 train, 04 dev, 05 test) with ``predict.speaker_norm`` on."""
    folder = tmp_path_factory.mktemp("speaker-norm-run")
    recipe = write_speaker_norm_recipe(folder / "s1.yaml", tiny_whisper_dir, corpus)
    notes = []
    training.train(load_recipe(recipe), folder / "run", log=notes.append)
    (folder / "train.log").write_text("\n".join(notes) + "\n")
    return folder / "run"
