"""The shared training loop, run folders, prediction and resume, on a tiny
random Whisper encoder and a miniature RAVDESS corpus."""

import csv
import json

import pytest
import yaml

from abhinaya.cli import main
from abhinaya.predictions import read_predictions
from abhinaya.runs import load_recipe
from abhinaya.testing.dummies import make_dummy_ravdess
from abhinaya.train import loop as training
from abhinaya.train import selection, state
from abhinaya.train.loop import lr_multiplier
from abhinaya.train.selection import balanced_subset


def write_recipe(path, tiny_whisper_dir, root, **train):
    recipe = {
        "member": "s1",
        "data": {"corpus": "ravdess", "root": str(root), "dev_speakers": ["04"], "test_speakers": ["05"]},
        "audio": {"train_crop_seconds": 0.5, "gain_jitter_db": 3.0},
        "model": {"encoder": str(tiny_whisper_dir), "attention_dim": 8, "head_hidden": 16, "freeze_layers": 1},
        "loss": {"name": "weighted_focal"},
        "train": {"epochs": 2, "batch_size": 8, "head_lr": 5e-3, "encoder_lr": 1e-3, "progress": False, **train},
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def interrupt_then_resume(monkeypatch, recipe_path, run_dir, dies_at_dev_evaluation: int) -> dict:
    """Train until the given dev evaluation (1-based) raises KeyboardInterrupt, then resume the run to its end."""
    real = selection.predict_with_dimensions
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == dies_at_dev_evaluation:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(selection, "predict_with_dimensions", interrupted)
    with pytest.raises(KeyboardInterrupt):
        training.train(load_recipe(recipe_path), run_dir, log=lambda _: None)
    monkeypatch.setattr(selection, "predict_with_dimensions", real)
    return training.train(load_recipe(recipe_path), run_dir, resume=True, log=lambda _: None)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_dummy_ravdess(tmp_path_factory.mktemp("corpus") / "ravdess", actors=(1, 2, 3, 4, 5))


def test_lr_schedule():
    assert lr_multiplier(0, 100, 0.1, "linear") == pytest.approx(0.1)
    assert lr_multiplier(9, 100, 0.1, "linear") == pytest.approx(1.0)
    assert lr_multiplier(55, 100, 0.1, "linear") == pytest.approx(0.5)
    assert lr_multiplier(99, 100, 0.1, "cosine") < 0.01
    assert lr_multiplier(50, 100, 0.0, "constant") == 1.0


def test_balanced_subset():
    from abhinaya.manifest import Utterance

    utts = [Utterance(f"a{i}", label="angry") for i in range(10)] + [Utterance(f"s{i}", label="sad") for i in range(3)]
    subset = balanced_subset(utts, None, seed=0)
    assert sorted(u.label for u in subset).count("angry") == 3 and len(subset) == 6
    assert balanced_subset(utts, None, seed=0) == subset
    assert len(balanced_subset(utts, 5, seed=0)) == 8  # sad keeps all 3


def test_train_predict_evaluate(tmp_path, tiny_whisper_dir, corpus, capsys):
    recipe = write_recipe(tmp_path / "s1.yaml", tiny_whisper_dir, "UNSET")
    run = tmp_path / "run"
    assert main(["train", str(recipe), "-o", str(run), "--set", f"data.root={corpus}"]) == 0
    for name in (
        "config.yaml", "labels.json", "model.safetensors", "metrics.csv", "metrics.jsonl", "dev_predictions.csv",
        "summary.json", "training_curves.png",
    ):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    dev = read_predictions(run / "dev_predictions.csv")
    assert len(dev) == 16 and all(i.endswith("-04") for i in dev.ids)  # actor 04 only, one row each
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["encoder_config"]["d_model"] == 32  # rebuildable without the encoder folder
    splits = [json.loads(line) for line in (run / "data" / "splits.jsonl").read_text().splitlines()]
    assert not {u["speaker"] for u in splits if u["split"] == "train"} & {"04", "05"}

    # prediction needs only the run folder: folders, files and manifests
    broken = tmp_path / "inputs" / "broken.wav"
    broken.parent.mkdir()
    broken.write_bytes(b"garbage")
    out = tmp_path / "pred.csv"
    capsys.readouterr()
    assert main(["predict", str(run), str(corpus / "Actor_05"), str(broken), "-o", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "broken.wav" in err
    table = read_predictions(out)
    assert len(table) == 16 and list(table.label_set) == json.loads((run / "labels.json").read_text())["labels"]
    manifest = run / "data" / "splits.jsonl"
    assert main(["predict", str(run), str(manifest), "--split", "test", "-o", str(out), "--no-progress"]) == 0
    assert len(read_predictions(out)) == 16
    assert main(["evaluate", str(out), str(manifest), "--split", "test"]) == 0

    # deterministic inference: the same input twice gives the same probabilities
    again = tmp_path / "again.csv"
    assert main(["predict", str(run), str(manifest), "--split", "test", "-o", str(again), "--no-progress"]) == 0
    assert (read_predictions(again).probs == read_predictions(out).probs).all()

    # a second train into the same folder must not overwrite it
    assert main(["train", str(recipe), "-o", str(run), "--set", f"data.root={corpus}"]) == 1
    assert "--resume" in capsys.readouterr().err


def test_keep_last_keeps_the_final_epoch_and_best_the_selected_one(tmp_path, tiny_whisper_dir, corpus):
    from safetensors.torch import load_file

    runs = {}
    for keep in ("best", "last"):
        recipe_path = write_recipe(tmp_path / f"{keep}.yaml", tiny_whisper_dir, corpus, epochs=3, keep=keep)
        runs[keep] = (training.train(load_recipe(recipe_path), tmp_path / keep, log=lambda _: None), tmp_path / keep)
    best, _ = runs["best"]
    last, last_dir = runs["last"]
    assert best["keep"] == "best" and best["kept_epoch"] == best["best_epoch"]
    assert last["keep"] == "last" and last["kept_epoch"] == 3
    # The same seed trains the same way: dev scores, and so the best epoch, agree.
    assert last["best_epoch"] == best["best_epoch"]
    rows = [json.loads(l) for l in (last_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["kept"] for r in rows] == [True, True, True]
    final = load_file(last_dir / "checkpoint" / "model.safetensors")
    kept = load_file(last_dir / "model.safetensors")
    assert kept.keys() == final.keys() and all((kept[k] == final[k]).all() for k in kept)
    with pytest.raises(ValueError, match="keep"):
        training.TrainConfig(keep="first")


def test_keep_average_keeps_the_mean_of_the_last_epochs_and_resumes(
    tmp_path, tiny_whisper_dir, corpus, monkeypatch
):
    import torch
    from safetensors.torch import load_file

    snapshots = []
    real_save = state.save_tensors

    def recording(path, tensors):
        if path.name == "model.safetensors" and path.parent.name == "checkpoint":  # one per epoch end
            snapshots.append({k: v.clone() for k, v in tensors.items()})
        return real_save(path, tensors)

    monkeypatch.setattr(state, "save_tensors", recording)
    recipe_path = write_recipe(
        tmp_path / "s1.yaml", tiny_whisper_dir, corpus, epochs=3, keep="average", average_epochs=2
    )
    summary = training.train(load_recipe(recipe_path), tmp_path / "full", log=lambda _: None)
    assert summary["averaged_epochs"] == [2, 3]
    assert 0.0 <= summary["average_dev_macro_f1"] <= 1.0
    kept = load_file(tmp_path / "full" / "model.safetensors")
    epoch2, epoch3 = snapshots[1], snapshots[2]
    changed = [k for k in kept if kept[k].is_floating_point() and not torch.equal(epoch2[k], epoch3[k])]
    assert changed  # the two epochs differ, so the mean is neither of them
    for key in kept:
        if kept[key].is_floating_point():
            torch.testing.assert_close(kept[key], (epoch2[key] + epoch3[key]) / 2)
    rows = [json.loads(l) for l in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["averaged"] for r in rows] == [False, True, True]

    # Interrupted after the first averaged epoch (at epoch 3's dev evaluation), then resumed: the same mean.
    resumed = interrupt_then_resume(monkeypatch, recipe_path, tmp_path / "cut", dies_at_dev_evaluation=3)
    assert resumed["averaged_epochs"] == [2, 3]
    again = load_file(tmp_path / "cut" / "model.safetensors")
    for key in kept:
        torch.testing.assert_close(again[key], kept[key])
    with pytest.raises(ValueError, match="average_epochs"):
        training.TrainConfig(epochs=2, keep="average", average_epochs=3)


def test_probe_epochs_hold_the_encoder_then_release_it(tmp_path, tiny_whisper_dir, corpus, monkeypatch):
    import torch
    from safetensors.torch import load_file

    snapshots = []
    real = state.save_tensors

    def recording(path, tensors):
        if path.parent.name == "checkpoint":  # one per epoch end
            snapshots.append({k: v.clone() for k, v in tensors.items()})
        return real(path, tensors)

    monkeypatch.setattr(state, "save_tensors", recording)
    recipe_path = write_recipe(tmp_path / "s1.yaml", tiny_whisper_dir, corpus, epochs=3, probe_epochs=1)
    training.train(load_recipe(recipe_path), tmp_path / "run", log=lambda _: None)
    assert len(snapshots) == 3
    initial = load_file(tiny_whisper_dir / "model.safetensors")
    trainable = [k for k in snapshots[0] if k.startswith("encoder.layers.1.")]  # freeze_layers 1: layer 1 trains
    assert trainable
    for key in trainable:  # after the probe epoch: exactly as loaded
        assert torch.equal(snapshots[0][key], initial[key]), key
    assert any(not torch.equal(snapshots[2][k], snapshots[0][k]) for k in trainable)  # then fine-tuned
    head = [k for k in snapshots[0] if k.startswith("head.") and k.endswith("weight")]
    assert head and any(not torch.equal(snapshots[1][k], snapshots[0][k]) for k in head)
    with pytest.raises(ValueError, match="probe_epochs"):
        training.TrainConfig(epochs=2, probe_epochs=2)


def test_resume_after_interruption_matches_uninterrupted(tmp_path, tiny_whisper_dir, corpus, monkeypatch):
    recipe_path = write_recipe(tmp_path / "s1.yaml", tiny_whisper_dir, corpus, epochs=3)
    full = training.train(load_recipe(recipe_path), tmp_path / "full", log=lambda _: None)
    assert full["epochs_run"] == 3
    # the run dies at the dev evaluation of epoch 2
    resumed = interrupt_then_resume(monkeypatch, recipe_path, tmp_path / "cut", dies_at_dev_evaluation=2)
    assert resumed["epochs_run"] == 3
    full_rows = [json.loads(l) for l in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    cut_rows = [json.loads(l) for l in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in cut_rows] == [1, 2, 3]
    for a, b in zip(full_rows, cut_rows):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["macro_f1"] == pytest.approx(b["macro_f1"])


def test_resume_before_the_first_checkpoint_starts_afresh_from_the_pretrained_encoder(
    tmp_path, tiny_whisper_dir, corpus, monkeypatch
):
    recipe_path = write_recipe(tmp_path / "s1.yaml", tiny_whisper_dir, corpus, epochs=2)
    full = training.train(load_recipe(recipe_path), tmp_path / "full", log=lambda _: None)
    real = state.save_tensors

    def dies_at_first_checkpoint(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(state, "save_tensors", dies_at_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        training.train(load_recipe(recipe_path), tmp_path / "cut", log=lambda _: None)
    monkeypatch.setattr(state, "save_tensors", real)
    assert (tmp_path / "cut" / "config.yaml").is_file()
    assert not (tmp_path / "cut" / "checkpoint" / "state.safetensors").exists()

    from abhinaya.models.ssl_classifier import SSLClassifier

    loads = []
    real_load = SSLClassifier.from_pretrained_encoder.__func__
    monkeypatch.setattr(
        SSLClassifier, "from_pretrained_encoder", classmethod(lambda cls, c: loads.append(c) or real_load(cls, c))
    )
    notes = []
    resumed = training.train(load_recipe(recipe_path), tmp_path / "cut", resume=True, log=notes.append)
    assert any("no checkpoint yet" in n for n in notes)
    assert len(loads) == 1  # the pretrained encoder is loaded, not a random one built from the saved config
    assert resumed["epochs_run"] == full["epochs_run"] == 2
    full_rows = [json.loads(l) for l in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    cut_rows = [json.loads(l) for l in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    # Same pretrained start, same data order: the same losses as the uninterrupted run.
    for a, b in zip(full_rows, cut_rows, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)


def test_recipe_errors_are_clear(tmp_path, tiny_whisper_dir, corpus, capsys):
    recipe = write_recipe(tmp_path / "s1.yaml", tiny_whisper_dir, corpus)
    assert main(["train", str(recipe), "-o", str(tmp_path / "r"), "--set", "train.epoch=3"]) == 1
    assert "train.epoch" in capsys.readouterr().err
    assert main(["train", str(recipe), "-o", str(tmp_path / "r"), "--set", "data.dev_speakers=[99]"]) == 1
    assert "99" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nothing"), str(corpus), "-o", str(tmp_path / "p.csv")]) == 1
    assert "run folder not found" in capsys.readouterr().err


def _progress(run_dir):
    from abhinaya.weights.checkpoint import load_nested_state

    return json.loads(load_nested_state(run_dir / "checkpoint" / "state.safetensors")["progress"])


def test_resume_within_an_epoch_loses_no_step(tmp_path, tiny_whisper_dir, corpus, monkeypatch):
    from abhinaya.members import s1

    # 3 training actors x 16 files = 6 batches of 8 per epoch; one dev batch per epoch.
    recipe_path = write_recipe(tmp_path / "s1.yaml", tiny_whisper_dir, corpus, epochs=2, checkpoint_every=2)
    training.train(load_recipe(recipe_path), tmp_path / "full", log=lambda _: None)
    real = s1.S1Member.logits
    calls = {"n": 0}

    def dies_mid_epoch(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 13:  # the 6th training batch of epoch 2, after the step-10 checkpoint
            raise KeyboardInterrupt
        return real(self, model, batch)

    monkeypatch.setattr(s1.S1Member, "logits", dies_mid_epoch)
    with pytest.raises(KeyboardInterrupt):
        training.train(load_recipe(recipe_path), tmp_path / "cut", log=lambda _: None)
    monkeypatch.setattr(s1.S1Member, "logits", real)
    assert _progress(tmp_path / "cut")["epoch"] == 1 and _progress(tmp_path / "cut")["batches_done"] == 4
    training.train(load_recipe(recipe_path), tmp_path / "cut", resume=True, log=lambda _: None)
    # every optimizer step done exactly once, as in the uninterrupted run
    assert _progress(tmp_path / "cut")["global_step"] == _progress(tmp_path / "full")["global_step"] == 12
    rows = [json.loads(l) for l in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]


@pytest.mark.slow
def test_two_processes_under_accelerate_launch(tmp_path, tiny_whisper_dir, corpus):
    """The same command under ``accelerate launch --multi_gpu --num_processes 2`` on CPU (gloo; accelerate
    names its torchrun launcher --multi_gpu): dev predictions gathered from both processes hold exactly
    one row per utterance."""
    import os
    import socket
    import subprocess
    import sys

    # probe_epochs: the first epoch trains only the head, which DDP must accept (every parameter gets a gradient)
    recipe = write_recipe(tmp_path / "s1.yaml", tiny_whisper_dir, corpus, epochs=2, batch_size=4, probe_epochs=1)
    run = tmp_path / "run"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
        "-m", "abhinaya.cli", "train", str(recipe), "-o", str(run),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2
    dev = read_predictions(run / "dev_predictions.csv")
    expected = sorted(p.stem for p in (corpus / "Actor_04").glob("*.wav"))
    assert sorted(dev.ids) == expected  # 16 rows, no duplicates, none missing
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(rows) == 2


def test_predict_names_an_empty_manifest(tmp_path):
    from abhinaya.predict.inputs import InputError, gather_inputs

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="empty.jsonl: no utterances"):
        gather_inputs([empty])
