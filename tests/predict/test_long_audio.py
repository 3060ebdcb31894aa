"""Long audio at prediction: block-wise reading, voice-activity detection, segmentation, and prediction of every
segment with a member's or a system's run folder (the tiny S1 run of conftest.py)."""

import csv
import json
import math
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from abhinaya.audio import AudioError, load_audio
from abhinaya.cli import main
from abhinaya.evaluation.combiners import FittedEnsemble
from abhinaya.labels import LabelSet
from abhinaya.manifest import read_manifest
from abhinaya.predict.inputs import predict
from abhinaya.predict.long_audio import (
    LongAudioConfig,
    Recording,
    predict_recordings,
    summarize_recordings,
)
from abhinaya.predict.segments import (
    VAD_RATE,
    EnergyDetector,
    Segment,
    SegmentConfig,
    SpeechTracker,
    cut_segments,
    find_segments,
    make_detector,
    pad_and_split,
    read_blocks,
)
from abhinaya.predictions import read_predictions, table_from_probs
from abhinaya.recipes import write_yaml
from abhinaya.testing.dummies import synthesize_utterance


def quiet(_message):
    pass


def tones_with_silence(path, seconds=120.0, rate=44_100, channels=2, seed=0, level=0.3, noise=0.001):
    """A recording of tones (1-8 s) separated by near-silence (1-3 s); returns the true ``(start, end)`` of each
    tone in seconds."""
    rng = np.random.default_rng(seed)
    parts, truth, t = [], [], 0.0
    while True:
        gap, length = rng.uniform(1.0, 3.0), rng.uniform(1.0, 8.0)
        if t + gap + length > seconds - 1.0:
            break
        parts.append(noise * rng.standard_normal(int(round(gap * rate))))
        t += len(parts[-1]) / rate
        n = int(round(length * rate))
        frequency = rng.uniform(150, 400)
        parts.append(level * np.sin(2 * np.pi * frequency * np.arange(n) / rate))
        truth.append((t, t + n / rate))
        t += n / rate
    parts.append(noise * rng.standard_normal(int(round((seconds - t) * rate))))
    wave = np.concatenate(parts).astype(np.float32)
    if channels > 1:
        wave = np.stack([wave] * channels, axis=1)
    sf.write(str(path), wave, rate, subtype="PCM_16")
    return truth


def babble(seconds, rng, rate=16_000, f0=120.0):
    """Speech-like sound Silero VAD takes for speech: a glottal pulse train through vowel formants changing every
    200 ms, with a syllabic envelope."""
    from scipy.signal import lfilter  # scikit-learn's dependency

    vowels = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (660, 1720, 2410)]
    n = int(seconds * rate)
    t = np.arange(n) / rate
    pitch = f0 * (1 + 0.15 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)))
    source = lfilter([1], [1, -0.95], np.diff(np.floor(np.cumsum(pitch / rate)), prepend=0.0))
    out = np.zeros(n)
    step = int(0.2 * rate)
    for s in range(0, n, step):
        piece = source[s:s + step].copy()
        for formant, bandwidth in zip(vowels[rng.integers(len(vowels))], (80, 100, 120)):
            r, theta = np.exp(-np.pi * bandwidth / rate), 2 * np.pi * formant / rate
            piece = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], piece)
        out[s:s + step] = piece
    out *= 0.5 - 0.5 * np.cos(2 * np.pi * t / 0.2)
    return (0.5 * out / (np.abs(out).max() + 1e-9)).astype(np.float32)


def grouped(segments, truth, tolerance):
    """The segments of each true region (those overlapping it), checking none overlaps two."""
    groups = []
    for start, end in truth:
        groups.append([s for s in segments if s.end > start - tolerance and s.start < end + tolerance])
    covered = [s for g in groups for s in g]
    assert len(covered) == len(set(covered)) == len(segments), "a segment outside the true regions, or across two"
    return groups


# ----------------------------------------------------------------------------- segmentation (no model)
def test_energy_vad_finds_the_tones_of_a_two_minute_recording(tmp_path):
    path = tmp_path / "tones.flac"
    truth = tones_with_silence(path)
    config = SegmentConfig(vad="energy", block_seconds=7.0, max_segment=5.0)
    found = find_segments(path, "tones", config)
    assert found.detector == "energy" and found.duration == pytest.approx(120.0, abs=0.01)
    frame = 512 / VAD_RATE
    for (start, end), group in zip(truth, grouped(found.segments, truth, 0.5)):
        assert group, f"no segment for the tone at {start:.2f}-{end:.2f} s"
        assert group[0].start == pytest.approx(max(0.0, start - config.speech_pad), abs=frame + 0.01)
        assert group[-1].end == pytest.approx(end + config.speech_pad, abs=2 * frame + 0.01)
        assert all(a.end == pytest.approx(b.start) for a, b in zip(group, group[1:])), "a split leaves a gap"
    assert max(s.duration for s in found.segments) <= config.max_segment
    assert any(len(g) > 1 for g in grouped(found.segments, truth, 0.5)), "some 8 s tone should have been split"
    assert all(s.id == f"tones_{round(s.start * 1000)}_{round(s.end * 1000)}" for s in found.segments)


def test_silero_vad_finds_speech_like_sound_between_silences(tmp_path):
    pytest.importorskip("silero_vad")
    import torch

    rng = np.random.default_rng(1)
    parts, truth, t = [np.zeros(VAD_RATE * 2, np.float32)], [], 2.0
    for i in range(8):
        length = float(rng.uniform(2.0, 6.0))
        parts.append(babble(length, rng, f0=100 + 15 * i))
        truth.append((t, t + length))
        t += length
        gap = float(rng.uniform(1.5, 3.0))
        parts.append(np.zeros(int(gap * VAD_RATE), np.float32))
        t += gap
    sf.write(str(tmp_path / "speech.wav"), np.concatenate(parts), VAD_RATE)
    threads = torch.get_num_threads()
    config = SegmentConfig(vad="silero", block_seconds=5.0)
    detector = make_detector(config)
    assert detector.name == "silero"
    assert torch.get_num_threads() == threads, "loading Silero VAD changed torch's thread count"
    found = find_segments(tmp_path / "speech.wav", "speech", config, detector)
    for (start, end), group in zip(truth, grouped(found.segments, truth, 0.5)):
        assert len(group) == 1
        assert group[0].start == pytest.approx(start - config.speech_pad, abs=0.15)
        assert group[0].end == pytest.approx(end + config.speech_pad, abs=0.25)


def test_without_silero_the_energy_detector_is_used_with_a_note(monkeypatch):
    import abhinaya.predict.segments as segments

    monkeypatch.setattr(segments, "silero_available", lambda: False)
    notes = []
    detector = make_detector(SegmentConfig(vad="silero"), notes.append)
    assert isinstance(detector, EnergyDetector)
    assert len(notes) == 1 and "silero-vad is not installed" in notes[0]
    assert isinstance(make_detector(SegmentConfig(vad="energy"), notes.append), EnergyDetector) and len(notes) == 1


def test_no_segment_is_longer_than_the_maximum_and_long_speech_is_split_evenly():
    config = SegmentConfig(max_segment=7.0, speech_pad=0.2)
    rng = np.random.default_rng(0)
    for _ in range(50):
        count = 2 * int(rng.integers(1, 30))
        edges = np.sort(rng.choice(np.arange(0, 3600 * VAD_RATE, 160), size=count, replace=False))
        regions = [(int(a), int(b)) for a, b in edges.reshape(-1, 2)]
        total = int(edges[-1]) + int(rng.integers(0, VAD_RATE))
        segments = pad_and_split(regions, total, "r", config)
        assert max(s.duration for s in segments) <= 7.0
        assert all(a.end <= b.start + 1e-9 for a, b in zip(segments, segments[1:])), "segments overlap"
        assert segments[0].start >= 0 and segments[-1].end <= total / VAD_RATE
    (piece, *rest) = pad_and_split([(VAD_RATE, 51 * VAD_RATE)], 60 * VAD_RATE, "r", config)
    lengths = [piece.duration] + [s.duration for s in rest]
    assert len(lengths) == math.ceil(50.4 / 7.0) and max(lengths) - min(lengths) < 1e-3


def test_the_tracker_carries_its_state_across_blocks():
    config = SegmentConfig(min_speech=0.1, min_silence=0.2)
    probs = np.r_[np.zeros(20), np.ones(40), np.zeros(5), np.ones(30), np.zeros(30), np.ones(2), np.zeros(20)]
    whole = SpeechTracker(config)
    expected = whole.push(probs) + whole.finish(len(probs) * 512)
    pieces = SpeechTracker(config)
    got = []
    for part in np.array_split(probs, 9):
        got += pieces.push(part)
    got += pieces.finish(len(probs) * 512)
    assert got == expected == [(20 * 512, 95 * 512)]  # the 5-frame pause is too short, the 2-frame blip too short


def test_the_block_reader_holds_a_bounded_amount_of_audio(tmp_path):
    path = tmp_path / "long.flac"
    tones_with_silence(path, seconds=120.0, rate=44_100, channels=2)
    block_seconds = 2.0
    sizes = [block.shape[0] for block in read_blocks(path, 16_000, block_seconds)]
    assert max(sizes) <= 1.05 * block_seconds * 16_000  # the streaming resampler's look-ahead, at most
    assert sum(sizes) == pytest.approx(120 * 16_000, abs=2)
    # the blocks are the whole file resampled
    whole = load_audio(path, 16_000)
    streamed = np.concatenate(list(read_blocks(path, 16_000, block_seconds)))
    assert abs(streamed.shape[0] - whole.shape[0]) <= 2
    n = min(streamed.shape[0], whole.shape[0])
    assert np.max(np.abs(streamed[:n] - whole[:n])) < 1e-3
    del whole, streamed
    # memory: reading 120 s of 44.1 kHz stereo (42 MB as float32) never holds more than a few blocks
    block_bytes = block_seconds * 44_100 * 2 * 4
    tracemalloc.start()
    try:
        for _ in read_blocks(path, 16_000, block_seconds):
            pass
        _, reading = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        found = find_segments(path, "long", SegmentConfig(vad="energy", block_seconds=block_seconds, max_segment=5.0))
        _, detecting = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        count = sum(1 for _ in cut_segments(path, found.segments, 16_000, block_seconds))
        _, cutting = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == len(found.segments)
    assert reading < 3 * block_bytes, reading
    assert detecting < 4 * block_bytes, detecting
    assert cutting < 4 * block_bytes + 5.0 * 16_000 * 4 * 2, cutting


def test_cut_segments_gives_the_samples_of_each_segment(tmp_path):
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, 16_000 * 50).astype(np.float32)
    sf.write(str(tmp_path / "x.wav"), wave, 16_000, subtype="FLOAT")
    segments = [Segment("x", 0.5, 3.0), Segment("x", 3.0, 9.25), Segment("x", 31.0, 49.0), Segment("x", 49.5, 55.0)]
    got = list(cut_segments(tmp_path / "x.wav", segments, 16_000, block_seconds=4.0))
    assert [s for s, _ in got] == segments
    for segment, samples in got[:3]:
        np.testing.assert_array_equal(samples, wave[round(segment.start * 16_000):round(segment.end * 16_000)])
    assert got[3][1].shape[0] == 8_000  # past the end of the file: cut at it


def test_reader_errors_name_the_file(tmp_path):
    bad = tmp_path / "nan.wav"
    wave = np.zeros(16_000 * 40, np.float32)
    wave[16_000 * 33] = np.nan
    sf.write(str(bad), wave, 16_000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan.wav: contains NaN or infinite samples \(at 33.0 s\)"):
        list(read_blocks(bad, 16_000, 10.0))
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav: file is empty"):
        list(read_blocks(tmp_path / "empty.wav", 16_000))


def test_summary_shares_sum_to_one_per_recording():
    labels = LabelSet(["angry", "happy", "sad"])
    rng = np.random.default_rng(0)
    recordings, ids = [], []
    for r in range(4):
        rows, t = [], 0.0
        for _ in range(int(rng.integers(1, 9))):
            length = float(rng.uniform(0.5, 20.0))
            segment = Segment(f"rec{r}", t, t + length)
            rows.append((segment.id, segment.start, segment.end))
            ids.append(segment.id)
            t += length + 1.0
        recordings.append(Recording(f"rec{r}", None, t, True, rows))
    recordings.append(Recording("silent", None, 60.0, True, []))
    table = table_from_probs(ids, rng.dirichlet(np.ones(3), size=len(ids)), labels)
    summary = summarize_recordings(table, recordings)
    for row, rec in zip(summary[:4], recordings):
        shares = [row[f"share_{label}"] for label in labels]
        assert sum(shares) == pytest.approx(1.0)
        assert row["speech_seconds"] == pytest.approx(sum(end - start for _, start, end in rec.rows))
        assert row["dominant"] == list(labels)[int(np.argmax(shares))]
        assert row["segments"] == len(rec.rows)
    assert summary[4]["speech_seconds"] == 0 and summary[4]["dominant"] == "" and summary[4]["segments"] == 0


# ----------------------------------------------------------------------------- prediction (the tiny S1 run)
def _test_files(run_dir):
    return [u for u in read_manifest(run_dir / "data" / "splits.jsonl") if u.split == "test"]


def utterances_with_silence(path, run_dir, count=12, gap=2.0, rate=16_000, seed=0):
    """Dummy utterances (1 s each) separated by ``gap`` s of near-silence, as one recording; the true regions."""
    rng = np.random.default_rng(seed)
    labels = ["angry", "happy", "sad", "neutral"]
    parts, truth, t = [], [], 0.0
    for i in range(count):
        parts.append(0.001 * rng.standard_normal(int(gap * rate)).astype(np.float32))
        t += gap
        wave = synthesize_utterance(labels[i % 4], rng, sample_rate=rate, seconds=1.0 + (i % 3))
        parts.append(wave)
        truth.append((t, t + wave.shape[0] / rate))
        t += wave.shape[0] / rate
    parts.append(np.zeros(int(gap * rate), np.float32))
    sf.write(str(path), np.concatenate(parts), rate, subtype="PCM_16")
    return truth


def test_short_files_give_exactly_the_same_table_as_before(tmp_path, speaker_norm_run, capsys):
    files = [u.audio for u in _test_files(speaker_norm_run)[:6]]
    before = predict(speaker_norm_run, files, progress=False, report=quiet)
    now = predict_recordings(speaker_norm_run, files, progress=False, report=quiet)
    assert now.recordings is None
    assert now.table.ids == before.ids and now.table.labels == before.labels
    np.testing.assert_array_equal(now.table.probs, before.probs)
    for mode in ("auto", "off"):
        out = tmp_path / mode / "p.csv"
        assert main(["predict", str(speaker_norm_run), *files, "-o", str(out), "--no-progress", "--segment", mode]) == 0
        assert sorted(p.name for p in out.parent.iterdir()) == ["p.csv"]
    assert (tmp_path / "auto" / "p.csv").read_bytes() == (tmp_path / "off" / "p.csv").read_bytes()


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory, speaker_norm_run):
    folder = tmp_path_factory.mktemp("long")
    truth = utterances_with_silence(folder / "talk.wav", speaker_norm_run)
    return folder / "talk.wav", truth


def test_a_long_recording_is_predicted_segment_by_segment(tmp_path, speaker_norm_run, long_recording, capsys):
    talk, truth = long_recording
    short = _test_files(speaker_norm_run)[0].audio
    out = tmp_path / "p.csv"
    capsys.readouterr()
    code = main(["predict", str(speaker_norm_run), str(talk), short, "-o", str(out), "--no-progress", "--vad", "energy",
                 "--max-segment", "2.5", "--plot"])
    assert code == 0
    err = capsys.readouterr().err
    assert f"{talk}: " in err and "cut into" in err and "only the first" not in err
    table = read_predictions(out)  # the standard table: one row per segment, and the short file as before
    segments = read_csv(tmp_path / "p.segments.csv")
    assert list(segments[0]) == ["recording", "start", "end", "FileName", "EmoClass"] + [
        f"prob_{label}" for label in table.label_set]
    talk_rows = [row for row in segments if row["recording"] == "talk"]
    found = [Segment("talk", float(r["start"]), float(r["end"])) for r in talk_rows]
    assert [r["FileName"] for r in talk_rows] == [s.id for s in found]
    for (start, end), group in zip(truth, grouped(found, truth, 0.45)):
        assert group and group[0].start == pytest.approx(start - 0.2, abs=0.05)
        assert group[-1].end == pytest.approx(end + 0.2, abs=0.1)
    assert max(s.duration for s in found) <= 2.5 + 1e-3
    short_id = _test_files(speaker_norm_run)[0].id
    assert set(table.ids) == {s.id for s in found} | {short_id}
    by_id = table.by_id()
    for row in segments:
        assert row["EmoClass"] == table.labels[by_id[row["FileName"]]]
    summary = {row["recording"]: row for row in read_csv(tmp_path / "p.summary.csv")}
    assert set(summary) == {"talk", short_id}
    for row in summary.values():
        assert sum(float(row[f"share_{label}"]) for label in table.label_set) == pytest.approx(1.0, abs=1e-3)
    assert float(summary["talk"]["duration"]) == pytest.approx(truth[-1][1] + 2.0, abs=0.01)
    assert float(summary["talk"]["speech_seconds"]) == pytest.approx(sum(s.duration for s in found), abs=0.01)
    assert int(summary[short_id]["segments"]) == 1 and float(summary[short_id]["speech_seconds"]) == pytest.approx(1.0)
    png = (tmp_path / "p.timeline.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_segments_are_predicted_in_bounded_chunks_with_the_same_result(speaker_norm_run, long_recording,
                                                                       monkeypatch):
    import abhinaya.predict.long_audio as long_audio

    talk, _ = long_recording
    options = dict(progress=False, report=quiet)
    config = SegmentConfig(vad="energy", max_segment=2.5)
    whole = predict_recordings(speaker_norm_run, [talk], long_audio=LongAudioConfig(segment=config), **options)
    sizes = []
    real_chunks = long_audio.chunks_of

    def spy(utterances, seconds, fallback):
        for chunk in real_chunks(utterances, seconds, fallback):
            sizes.append(sum(u.duration for u in chunk))
            yield chunk

    monkeypatch.setattr(long_audio, "chunks_of", spy)
    small = predict_recordings(speaker_norm_run, [talk], long_audio=LongAudioConfig(segment=config, chunk_seconds=8.0),
                               **options)
    assert len(sizes) > 3 and max(sizes) <= 8.0
    assert small.table.ids == whole.table.ids  # per-speaker normalisation (on in this run) sees every chunk
    np.testing.assert_allclose(small.table.probs, whole.table.probs, atol=1e-5)


def test_a_corrupt_long_file_is_named_once_and_the_others_are_predicted(tmp_path, speaker_norm_run, long_recording,
                                                                       capsys):
    talk, _ = long_recording
    broken = tmp_path / "broken.flac"
    wave, rate = sf.read(str(talk), dtype="float32")
    sf.write(str(broken), wave, rate, subtype="PCM_16")
    data = bytearray(broken.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 30_000] = np.random.default_rng(0).integers(0, 256, 30_000, dtype=np.uint8).tobytes()
    broken.write_bytes(bytes(data))
    short = _test_files(speaker_norm_run)[1].audio
    out = tmp_path / "p.csv"
    capsys.readouterr()
    assert main(["predict", str(speaker_norm_run), str(broken), str(talk), short, "-o", str(out), "--no-progress",
                 "--vad", "energy"]) == 0
    err = capsys.readouterr().err.splitlines()
    named = [line for line in err if "broken.flac" in line]
    assert len(named) == 1 and named[0].startswith(f"skipped: {broken}: ") and "damaged" in named[0]
    recordings = {row["recording"] for row in read_csv(tmp_path / "p.segments.csv")}
    assert recordings == {"talk", _test_files(speaker_norm_run)[1].id}


def test_a_system_run_segments_once_and_every_member_predicts_the_segments(tmp_path, speaker_norm_run,
                                                                          long_recording, capsys):
    from abhinaya.recipes import from_dict
    from abhinaya.system.recipe import SystemRecipe

    talk, _ = long_recording
    system = tmp_path / "system"
    system.mkdir()
    labels = json.loads((speaker_norm_run / "labels.json").read_text())
    labels = labels["labels"] if isinstance(labels, dict) else labels
    members = {name: {"run": str(speaker_norm_run)} for name in "ab"}
    recipe = from_dict(SystemRecipe, {"name": "pair", "data": {"corpus": "ravdess"}, "members": members})
    write_yaml(system / "system.yaml", recipe)
    (system / "members.json").write_text(json.dumps({
        name: {"run": str(speaker_norm_run), "member": "s1", "joined": True} for name in "ab"}))
    ensemble = FittedEnsemble(method="soft", members=["a", "b"], label_set=list(labels))
    (system / "ensemble.json").write_text(json.dumps({"chosen": "soft", "system": ensemble.to_dict()}))
    options = ["--no-progress", "--vad", "energy", "--max-segment", "2.5"]
    assert main(["predict", str(system), str(talk), "-o", str(tmp_path / "s.csv"), "--members", str(tmp_path / "m"),
                 *options]) == 0
    assert main(["predict", str(speaker_norm_run), str(talk), "-o", str(tmp_path / "one.csv"), *options]) == 0
    err = capsys.readouterr().err
    assert err.count("cut into") == 2  # once for the system, once for the member run: not once per member
    combined, single = read_predictions(tmp_path / "s.csv"), read_predictions(tmp_path / "one.csv")
    assert sorted(combined.ids) == sorted(single.ids)
    np.testing.assert_allclose(combined.reorder(single.ids).probs, single.probs, atol=1e-5)
    for name in "ab":
        assert read_predictions(tmp_path / "m" / f"{name}.csv").ids == single.ids
    assert (tmp_path / "s.summary.csv").read_text() == (tmp_path / "one.summary.csv").read_text()


def test_options_are_checked(tmp_path, speaker_norm_run, capsys):
    files = [_test_files(speaker_norm_run)[0].audio]
    assert main(["predict", str(speaker_norm_run), *files, "-o", str(tmp_path / "p.csv"), "--max-segment", "0"]) == 1
    assert "max_segment must be positive" in capsys.readouterr().err
    assert main(["predict", str(speaker_norm_run), *files, "-o", str(tmp_path / "p.csv"), "--segment", "off",
                 "--plot"]) == 1
    assert "--plot" in capsys.readouterr().err


def test_the_help_states_the_defaults_of_segment_config(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    defaults = SegmentConfig()
    assert f"(default {defaults.max_segment:g}," in text
    for option, value in (("--min-speech", defaults.min_speech), ("--min-silence", defaults.min_silence),
                          ("--speech-pad", defaults.speech_pad)):
        assert f"(default {value:g})" in text, option


def test_always_segments_short_files_too(tmp_path, speaker_norm_run):
    source = _test_files(speaker_norm_run)[2]
    wave, rate = sf.read(source.audio, dtype="float32")
    padded = np.concatenate([np.zeros(2 * rate, np.float32), wave, np.zeros(3 * rate, np.float32)])
    sf.write(str(tmp_path / "padded.wav"), padded, rate)
    config = LongAudioConfig(mode="always", segment=SegmentConfig(vad="energy"))
    result = predict_recordings(speaker_norm_run, [tmp_path / "padded.wav"], long_audio=config, progress=False,
                                report=quiet)
    (recording,) = result.recordings
    assert recording.segmented and recording.duration == pytest.approx(padded.shape[0] / rate)
    (row_id, start, end), = recording.rows
    assert result.table.ids == [row_id]
    assert 1.7 <= start <= 2.0 and 2.9 <= end <= 3.3  # the 1 s utterance at 2-3 s, padded by at most 0.2 s
