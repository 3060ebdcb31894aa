"""A tiny random-weight S1 run (per-speaker normalisation on), trained once, and the real service on it: uvicorn
on 127.0.0.1, a free port, in a background thread that the fixture stops at the end."""

import pytest
import yaml

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("python_multipart")
pytest.importorskip("httpx")

from abhinaya.runs import load_recipe
from abhinaya.serve import BackgroundServer, ServeSettings, load_service
from abhinaya.testing.dummies import make_dummy_ravdess
from abhinaya.train import loop as training

# The service's limits in the tests: small, so that the hostile bodies that cross them stay small too.
TEST_SETTINGS = {"port": 0, "max_body_mb": 1.0, "max_duration": 5.0, "max_files": 6, "max_batch": 8,
                 "batch_wait_ms": 50.0}


@pytest.fixture(scope="session")
def serve_corpus(tmp_path_factory):
    return make_dummy_ravdess(tmp_path_factory.mktemp("corpus") / "ravdess", actors=(1, 2, 3, 4))


@pytest.fixture(scope="session")
def serve_run(tmp_path_factory, tiny_whisper_dir, serve_corpus):
    """A trained tiny S1 run folder (actors 01-02 train, 03 dev, 04 test) with ``predict.speaker_norm`` on."""
    folder = tmp_path_factory.mktemp("serve-run")
    recipe = {
        "member": "s1",
        "data": {"corpus": "ravdess", "root": str(serve_corpus), "dev_speakers": ["03"], "test_speakers": ["04"]},
        "audio": {"train_crop_seconds": None},
        "model": {"encoder": str(tiny_whisper_dir), "attention_dim": 8, "head_hidden": 16, "freeze_layers": 1,
                  "head_norm": "running"},
        "train": {"epochs": 1, "batch_size": 8, "head_lr": 5e-3, "encoder_lr": 1e-3, "progress": False},
        "predict": {"speaker_norm": True, "speaker_norm_prior": 2.0},
    }
    path = folder / "s1.yaml"
    path.write_text(yaml.safe_dump(recipe))
    training.train(load_recipe(path), folder / "run", log=lambda _message: None)
    return folder / "run"


@pytest.fixture(scope="module")
def server(serve_run):
    """The service on the tiny run, started once per test module and stopped after it."""
    with BackgroundServer(load_service(serve_run, device="cpu"), ServeSettings(**TEST_SETTINGS)) as running:
        yield running
