"""A system run folder served whole: every member loaded once, the fitted ensemble applied, each member's answer
shown, and the result equal to ``abhinaya predict`` of the system folder."""

import json

import httpx
import numpy as np
import pytest
import yaml

from abhinaya.cli import main
from abhinaya.predictions import read_predictions
from abhinaya.serve import BackgroundServer, ServeSettings, load_service
from abhinaya.serve.predictor import SystemService


@pytest.fixture(scope="module")
def egemaps_run(tmp_path_factory, serve_corpus):
    """A tiny egemaps run (openSMILE functionals, a linear head) on the same corpus, with no feature cache."""
    pytest.importorskip("opensmile")
    from abhinaya.runs import recipe_from_dict
    from abhinaya.train.loop import train

    recipe = recipe_from_dict({
        "member": "egemaps",
        "data": {"corpus": "ravdess", "root": str(serve_corpus), "dev_speakers": ["03"], "test_speakers": ["04"]},
        "model": {"head_hidden": 8, "feature_cache": None},
        "train": {"epochs": 2, "batch_size": 8, "progress": False},
    })
    run = tmp_path_factory.mktemp("egemaps") / "run"
    train(recipe, run, log=lambda _: None)
    return run


@pytest.fixture(scope="module")
def system_run(tmp_path_factory, serve_run, egemaps_run):
    """A finished system folder of two members (the tiny S1 run and the egemaps run) and a soft-vote ensemble,
    written as ``abhinaya run`` writes one."""
    folder = tmp_path_factory.mktemp("system") / "run"
    folder.mkdir()
    labels = json.loads((serve_run / "labels.json").read_text())["labels"]
    runs = {"s1": serve_run, "egemaps": egemaps_run}
    (folder / "system.yaml").write_text(yaml.safe_dump({"name": "tiny", "data": {"corpus": "ravdess"},
                                                        "members": {n: {"run": str(r)} for n, r in runs.items()}}))
    (folder / "members.json").write_text(json.dumps({n: {"run": str(r), "member": n, "joined": True}
                                                     for n, r in runs.items()}))
    fitted = {"method": "soft", "members": list(runs), "label_set": labels, "tiebreak": None, "weights": None,
              "stacker": None, "member": None}
    (folder / "ensemble.json").write_text(json.dumps({"chosen": "soft", "reason": "test", "system": fitted,
                                                      "members": list(runs)}))
    return folder


def test_a_system_is_served_whole_and_answers_as_abhinaya_predict(system_run, serve_corpus, tmp_path):
    service = load_service(system_run, device="cpu", report=lambda _message: None)
    assert isinstance(service, SystemService) and list(service.members) == ["s1", "egemaps"]
    wav = sorted((serve_corpus / "Actor_04").glob("*.wav"))[3]
    with BackgroundServer(service, ServeSettings(port=0)) as server:
        health = httpx.get(f"{server.url}/health", timeout=30).json()
        answer = httpx.post(f"{server.url}/predict", files={"file": (wav.name, wav.read_bytes())}, timeout=30)
    assert health["kind"] == "system" and health["ensemble"] == "soft"
    assert health["members"] == {"s1": "s1", "egemaps": "egemaps"}
    assert answer.status_code == 200, answer.text
    got = answer.json()
    out, members = tmp_path / "system.csv", tmp_path / "members"
    assert main(["predict", str(system_run), str(wav), "-o", str(out), "--no-progress", "--no-speaker-norm",
                 "--members", str(members)]) == 0
    table = read_predictions(out)
    assert got["label"] == table.labels[0]
    np.testing.assert_allclose(list(got["probabilities"].values()), table.probs[0], atol=1e-5)
    for name in ("s1", "egemaps"):  # each member's own answer, as abhinaya predict --members writes it
        own = read_predictions(members / f"{name}.csv")
        assert got["members"][name]["label"] == own.labels[0]
        np.testing.assert_allclose(list(got["members"][name]["probabilities"].values()), own.probs[0], atol=1e-5)
