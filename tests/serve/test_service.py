"""The real service (uvicorn on 127.0.0.1, a free port) on a tiny S1 run, spoken to over HTTP: predictions equal
``abhinaya predict``, concurrent requests are batched and still equal, every hostile body gets its 4xx JSON, and
nothing a request names is opened on the server."""

import io
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from abhinaya.cli import main
from abhinaya.predictions import read_predictions
from abhinaya.serve import BackgroundServer, ServeSettings
from abhinaya.serve.predictor import ItemResult, ServedModel

TIMEOUT = httpx.Timeout(30.0)


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
        yield http


@pytest.fixture(scope="module")
def wavs(serve_corpus):
    return sorted((serve_corpus / "Actor_04").glob("*.wav"))


def post_file(http, path_or_bytes, name="speech.wav", content_type="audio/wav", url="/predict", data=None):
    body = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    return http.post(url, files={"file": (name, body, content_type)}, data=data)


def cli_probabilities(run_dir, inputs, tmp_path, *extra):
    out = tmp_path / "cli.csv"
    assert main(["predict", str(run_dir), *map(str, inputs), "-o", str(out), "--no-progress", *extra]) == 0
    table = read_predictions(out)
    return {utt_id: dict(zip(table.label_set, row)) for utt_id, row in zip(table.ids, table.probs)}, table


def test_health_labels_and_openapi(client, serve_run):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["run"] == serve_run.name and health["kind"] == "member"
    assert health["members"] == {serve_run.name: "s1"}
    labels = client.get("/labels").json()["labels"]
    assert labels == health["labels"] and len(labels) == 8
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/predict/group", "/health", "/labels"} <= set(schema["paths"])
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"] and body["properties"]["file"]["format"] == "binary"
    assert client.get("/docs").status_code == 200
    assert str(serve_run.parent) not in client.get("/health").text  # the folder's name, not where it is


def test_a_wav_gets_what_abhinaya_predict_gives_without_normalisation(client, serve_run, wavs, tmp_path):
    answer = post_file(client, wavs[0], name=wavs[0].name)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    expected, table = cli_probabilities(serve_run, [wavs[0]], tmp_path, "--no-speaker-norm")
    assert got["label"] == table.labels[0]
    assert list(got["probabilities"]) == list(table.label_set)
    assert sum(got["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(list(got["probabilities"].values()), list(expected[wavs[0].stem].values()), atol=1e-5)
    assert got["duration"] == pytest.approx(1.0, abs=1e-3)
    assert got["segments"] is None and got["speaker_norm"] is False


def test_eight_concurrent_requests_all_succeed_are_batched_and_unchanged(server, client, wavs):
    alone = {w.name: post_file(client, w).json()["probabilities"] for w in wavs[:8]}
    before = client.get("/health").json()["batching"]
    start = threading.Barrier(8)

    def one(path):
        with httpx.Client(base_url=server.url, timeout=TIMEOUT) as own:
            start.wait(timeout=10)
            return path.name, post_file(own, path)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, wavs[:8]))
    assert [r.status_code for _, r in answers] == [200] * 8
    for name, answer in answers:
        got = answer.json()["probabilities"]
        # float32 matrix products of 8 rows round differently from those of 1 row: ~1e-5, as abhinaya predict's do
        np.testing.assert_allclose(list(got.values()), list(alone[name].values()), atol=1e-4)
    after = client.get("/health").json()["batching"]
    assert after["requests"] - before["requests"] == 8
    assert after["batches"] - before["batches"] < 8  # some requests shared a batch
    assert after["batched_requests"] > before["batched_requests"] and after["largest_batch"] >= 2


def wav_bytes(wave, rate=16000, subtype="PCM_16"):
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def hostile_requests(wavs):
    """(what, request kwargs, expected status, words the error must hold)."""
    good = wavs[0].read_bytes()
    flac = io.BytesIO()
    sf.write(flac, sf.read(wavs[0])[0], 16000, format="FLAC")
    flac = flac.getvalue()
    long_wav = wav_bytes(np.zeros(6 * 16000, dtype=np.float32) + 0.01)  # 6 s > --max-duration 5
    nan_wav = wav_bytes(np.full(1600, np.nan, dtype=np.float32), subtype="FLOAT")

    def upload(data, name="x.wav", content_type="audio/wav"):
        return {"files": {"file": (name, data, content_type)}}

    boundary = "b0undary"
    cut = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.wav\"\r\n\r\n").encode()
    return [
        ("empty file", upload(b""), 400, "empty"),
        ("text, not audio", upload(b"this is not audio at all", "notes.txt", "text/plain"), 400, "not audio"),
        ("truncated wav", upload(good[: len(good) // 3]), 400, "truncated"),
        ("truncated flac", upload(flac[: len(flac) // 2], "x.flac", "audio/flac"), 400, "truncated"),
        ("NaN samples", upload(nan_wav), 400, "NaN"),
        ("too long", upload(long_wav), 413, "--max-duration"),
        ("body too large", upload(b"\0" * 1_200_000), 413, "--max-body-mb"),
        ("m4a", upload(b"\x00\x00\x00\x20ftypM4A " + bytes(4000), "x.m4a", "audio/mp4"), 415, "MP4"),
        ("webm", upload(b"\x1a\x45\xdf\xa3" + bytes(4000), "x.webm", "audio/webm"), 415, "WebM"),
        ("raw body", {"content": good, "headers": {"content-type": "audio/wav"}}, 415, "multipart/form-data"),
        ("json body", {"json": {"file": "/etc/passwd"}}, 415, "multipart/form-data"),
        ("no file field", {"data": {"speaker": "spk"}, "files": {"audio": ("x.wav", good)}}, 422, "unknown"),
        ("only a speaker", {"files": {"speaker": (None, b"spk")}}, 422, "missing the field 'file'"),
        ("two files", {"files": [("file", ("a.wav", good)), ("file", ("b.wav", good))]}, 422, "/predict/group"),
        ("speaker named as an emotion", {"files": {"file": ("a.wav", good)}, "data": {"speaker": "Angry"}}, 422,
         "emotion"),
        ("truncated multipart", {"content": cut + good[:100],
                                 "headers": {"content-type": f"multipart/form-data; boundary={boundary}"}},
         400, "truncated"),
    ]


def test_every_hostile_body_gets_its_4xx_json(client, wavs, serve_run):
    for what, request, status, words in hostile_requests(wavs):
        answer = client.post("/predict", **request)
        assert answer.status_code == status, (what, answer.text)
        assert answer.headers["content-type"].startswith("application/json"), what
        error = answer.json()["error"]
        assert words in error, (what, error)
        assert str(serve_run.parent) not in error and "BytesIO" not in error, (what, error)
    # a body streamed without Content-Length is cut off at the limit too
    chunks = (b"\0" * 100_000 for _ in range(20))
    answer = client.post("/predict", content=chunks, headers={"content-type": "multipart/form-data; boundary=x"})
    assert answer.status_code == 413 and "--max-body-mb" in answer.json()["error"]
    assert client.get("/nowhere").json() == {"error": "Not Found"}
    assert client.get("/health").json()["status"] == "ok"  # the service is unharmed


@pytest.fixture
def opened(monkeypatch):
    """Paths given to the decoder or to open() while the test runs (the server runs in this process)."""
    import soundfile

    seen: list[str] = []

    def watch(real):
        def wrapper(file, *args, **kwargs):
            if not hasattr(file, "read"):
                seen.append(str(file))
            return real(file, *args, **kwargs)
        return wrapper

    for name in ("read", "info", "SoundFile"):
        monkeypatch.setattr(soundfile, name, watch(getattr(soundfile, name)))
    active = [True]

    def hook(event, args):
        if active[0] and event == "open" and args and isinstance(args[0], (str, bytes, Path)):
            seen.append(str(args[0]))

    sys.addaudithook(hook)
    yield seen
    active[0] = False


def test_nothing_a_request_names_is_opened(client, wavs, tmp_path, opened):
    secret = tmp_path / "secret.wav"
    secret.write_bytes(wavs[0].read_bytes())
    opened.clear()  # the test's own writing of it
    name = str(secret)
    answers = [
        client.post("/predict", files={"file": (name, b"", "audio/wav")}),  # a path as the file name, no bytes
        client.post("/predict", files={"file": ("x.wav", name.encode(), "audio/wav")}),  # a path as the bytes
        client.post("/predict", files={"file": (None, name.encode())}),  # the field as text holding a path
        client.post("/predict", files={"file": ("x.wav", b"")}, data={"path": name}),
        client.post("/predict", files={"file": (f"file://{name}", b"")}),
    ]
    assert [a.status_code for a in answers] == [400, 400, 422, 422, 400]
    assert "file upload" in answers[2].json()["error"]
    spoken = client.post("/predict", files={"file": ("a.wav", wavs[1].read_bytes())}, data={"speaker": name})
    assert spoken.status_code == 200  # a speaker is a name, nothing more
    assert not [path for path in opened if "secret" in path]


def test_a_named_speaker_groups_only_that_requests_files(client, wavs, serve_run, tmp_path):
    files = [("file", (w.name, w.read_bytes(), "audio/wav")) for w in wavs[:4]]
    plain = client.post("/predict/group", files=files).json()
    alone = [post_file(client, w).json()["probabilities"] for w in wavs[:4]]
    assert plain["speaker"] is None
    for result, single in zip(plain["results"], alone):  # each file on its own (batch rounding aside, ~1e-5)
        assert result["speaker_norm"] is False
        np.testing.assert_allclose(list(result["probabilities"].values()), list(single.values()), atol=1e-4)
    grouped = client.post("/predict/group", files=files, data={"speaker": "04"}).json()
    assert grouped["speaker"] == "04" and [r["filename"] for r in grouped["results"]] == [w.name for w in wavs[:4]]
    assert all(r["speaker_norm"] for r in grouped["results"])
    # as abhinaya predict normalises a manifest speaker with these four utterances
    from abhinaya.manifest import Utterance, write_manifest

    manifest = write_manifest(tmp_path / "m.jsonl", [Utterance(w.stem, audio=str(w), speaker="04") for w in wavs[:4]])
    expected, _ = cli_probabilities(serve_run, [manifest], tmp_path, "--speaker-norm")
    for result, w in zip(grouped["results"], wavs[:4]):
        np.testing.assert_allclose(list(result["probabilities"].values()), list(expected[w.stem].values()), atol=1e-5)
    moved = max(abs(g["probabilities"][k] - p["probabilities"][k])
                for g, p in zip(grouped["results"], plain["results"]) for k in g["probabilities"])
    assert moved > 1e-6
    again = client.post("/predict/group", files=files, data={"speaker": "04"}).json()
    assert again == grouped  # other requests' audio never joins the group
    too_many = [("file", (f"{k}.wav", wavs[0].read_bytes())) for k in range(7)]
    answer = client.post("/predict/group", files=too_many)
    assert answer.status_code == 413 and "--max-files" in answer.json()["error"]


class SlowModel(ServedModel):
    """No model: each batch takes a while, so that requests pile up."""

    kind = "member"
    run_dir = Path("slow")
    labels = ["calm", "sad"]
    members = {}
    min_seconds = 0.0
    max_input_seconds = 30.0

    def predict(self, items):
        time.sleep(0.4)
        return [ItemResult(label="calm", probabilities={"calm": 1.0, "sad": 0.0}) for _ in items]


def test_a_full_queue_answers_503(wavs):
    settings = ServeSettings(port=0, queue_size=1, max_batch=1, batch_wait_ms=0)
    with BackgroundServer(SlowModel(), settings) as slow:
        def one(_):
            with httpx.Client(base_url=slow.url, timeout=TIMEOUT) as own:
                return post_file(own, wavs[0])

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(one, range(6)))
    codes = sorted(a.status_code for a in answers)
    assert 200 in codes and 503 in codes and set(codes) <= {200, 503}
    busy = next(a for a in answers if a.status_code == 503)
    assert "busy" in busy.json()["error"] and busy.headers["retry-after"] == "1"


def test_abhinaya_serve_runs_until_interrupted(serve_run, wavs):
    process = subprocess.Popen(
        [sys.executable, "-m", "abhinaya.cli", "serve", str(serve_run), "--port", "0", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()  # printed once the socket is bound (the process exits on failure)
        assert line.startswith("serving "), (line, process.stderr.read() if process.poll() is not None else "")
        url = line.split(" at ")[1].split()[0]
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{url}/health", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the served port never answered"
                time.sleep(0.1)
        assert health.json()["run"] == serve_run.name
        answer = httpx.post(f"{url}/predict", files={"file": ("a.wav", wavs[0].read_bytes())}, timeout=TIMEOUT)
        assert answer.status_code == 200 and answer.json()["label"] in health.json()["labels"]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) in (0, 130)  # 130: the command line's "interrupted"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        process.stdout.close()
        process.stderr.close()
