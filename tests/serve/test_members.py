"""Members other than S1 fed from memory: a tiny S2 (speech LLM) run served alone answers as ``abhinaya predict``,
without touching its on-disk feature cache; a text member's run folder alone is refused with the reason."""

import httpx
import numpy as np
import pytest
import yaml

from abhinaya.cli import main
from abhinaya.predictions import read_predictions
from abhinaya.serve import BackgroundServer, ServeError, ServeSettings, load_service


@pytest.fixture(scope="module")
def s2_run(tmp_path_factory, tiny_whisper_dir, tiny_llama_dir, serve_corpus):
    folder = tmp_path_factory.mktemp("s2")
    recipe = {
        "member": "s2",
        "data": {"corpus": "ravdess", "root": str(serve_corpus), "dev_speakers": ["03"], "test_speakers": ["04"]},
        "model": {
            "whisper": str(tiny_whisper_dir), "llm": str(tiny_llama_dir),
            "qformer": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32},
            "attention_dim": 8, "head_hidden": 16, "feature_cache": str(folder / "features"),
        },
        "train": {"epochs": 1, "batch_size": 8, "encoder_lr": 1e-3, "head_lr": 5e-3, "progress": False},
    }
    (folder / "s2.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["train", str(folder / "s2.yaml"), "-o", str(folder / "run")]) == 0
    return folder / "run"


def test_an_s2_run_is_served_from_memory(s2_run, serve_corpus, tmp_path):
    features = s2_run.parent / "features"
    cached = sorted(features.rglob("*.npy"))
    wav = sorted((serve_corpus / "Actor_04").glob("*.wav"))[5]
    with BackgroundServer(load_service(s2_run, device="cpu"), ServeSettings(port=0)) as server:
        answer = httpx.post(f"{server.url}/predict", files={"file": (wav.name, wav.read_bytes())}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert sorted(features.rglob("*.npy")) == cached  # the service wrote no features for the upload
    out = tmp_path / "s2.csv"
    assert main(["predict", str(s2_run), str(wav), "-o", str(out), "--no-progress", "--no-speaker-norm"]) == 0
    table = read_predictions(out)
    assert answer.json()["label"] == table.labels[0]
    np.testing.assert_allclose(list(answer.json()["probabilities"].values()), table.probs[0], atol=1e-5)


def test_a_text_member_run_alone_is_refused(tmp_path):
    run = tmp_path / "t2"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"member": "t2"}))
    (run / "labels.json").write_text('{"labels": ["angry", "sad"]}')
    with pytest.raises(ServeError, match="serve the system run folder"):
        load_service(run, device="cpu")


def test_system_transcripts_are_decoded_from_memory_window_by_window():
    from abhinaya.asr.transcribe import TranscriptionConfig
    from abhinaya.serve.predictor import ServeItem, SystemService
    from abhinaya.serve.upload import Clip

    class Words:
        """A stand-in Whisper: each window's text tells its length; windows of 7 s cannot be decoded."""

        def transcribe(self, waves):
            if any(len(w) == 7 * 16000 for w in waves):
                raise RuntimeError("cannot decode")
            return [f"w{len(w) // 16000}" for w in waves]

    service = SystemService.__new__(SystemService)
    service.transcription = TranscriptionConfig(batch_size=2)
    service.transcriber = Words()
    items = [ServeItem(f"r-{k}", Clip(f"{k}.wav", np.zeros(int(s * 16000), np.float32), 16000))
             for k, s in enumerate([65, 3, 7, 8000 / 16000])]
    service.transcribe(items)
    assert [item.text for item in items] == ["w30 w30 w5", "w3", None, "w0"]
