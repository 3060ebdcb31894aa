"""Uploads longer than the model's input (30 s): the service cuts them into utterances as ``abhinaya predict`` cuts
a long file, and answers each segment with its times; the real server on 127.0.0.1."""

import csv
import io

import httpx
import numpy as np
import pytest
import soundfile as sf

from abhinaya.cli import main
from abhinaya.serve import BackgroundServer, ServeSettings, load_service


@pytest.fixture(scope="module")
def recording(tmp_path_factory, serve_corpus):
    """44 s: twenty 1 s corpus files, each followed by 1.2 s of faint noise."""
    rng = np.random.default_rng(0)
    parts = []
    for path in sorted((serve_corpus / "Actor_04").glob("*.wav"))[:20]:
        wave, rate = sf.read(path, dtype="float32")
        assert rate == 16000
        parts += [wave, 0.0005 * rng.standard_normal(int(1.2 * rate)).astype(np.float32)]
    path = tmp_path_factory.mktemp("long") / "talk.wav"
    sf.write(path, np.concatenate(parts), 16000, subtype="FLOAT")
    return path


def test_a_long_upload_is_answered_segment_by_segment_as_predict_cuts_it(serve_run, recording, tmp_path):
    settings = ServeSettings(port=0, max_duration=120.0, max_body_mb=10.0, vad="energy")
    with BackgroundServer(load_service(serve_run, device="cpu"), settings) as server, \
            httpx.Client(base_url=server.url, timeout=httpx.Timeout(60.0)) as http:
        answer = http.post("/predict", files={"file": ("talk.wav", recording.read_bytes(), "audio/wav")})
        short = http.post("/predict", files={"file": ("one.wav", io.BytesIO(b""), "audio/wav")})
    assert short.status_code == 400  # the limits still hold
    assert answer.status_code == 200, answer.text
    body = answer.json()
    segments = body["segments"]
    assert 10 <= len(segments) <= 20  # the detector may join files or drop a quiet one; predict must agree below
    assert all(a["end"] <= b["start"] for a, b in zip(segments, segments[1:]))
    assert f"cut into {len(segments)} segment(s) by the energy" in body["notes"][0]
    time = {}
    for seg in segments:
        time[seg["label"]] = time.get(seg["label"], 0.0) + seg["end"] - seg["start"]
    assert body["label"] == max(time, key=time.get)
    assert abs(sum(body["probabilities"].values()) - 1.0) < 1e-6

    out = tmp_path / "cli.csv"
    assert main(["predict", str(serve_run), str(recording), "-o", str(out), "--vad", "energy", "--no-progress"]) == 0
    with (tmp_path / "cli.segments.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(float(r["start"]), float(r["end"])) for r in rows] == [(s["start"], s["end"]) for s in segments]
    for row, seg in zip(rows, segments):
        assert row["EmoClass"] == seg["label"]
        for label, p in seg["probabilities"].items():
            assert abs(float(row[f"prob_{label}"]) - p) < 1e-4
