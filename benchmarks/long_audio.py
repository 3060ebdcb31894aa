"""Long audio: `abhinaya predict` on one hour of audio, cut into utterances by a voice-activity detector.

    python benchmarks/long_audio.py --data ../shared/data/ravdess --run RUN_DIR [--minutes 60] [--actors 17,18,19,20]

A recording of ``--minutes`` is made on the fly in a temporary folder (never kept): RAVDESS files of ``--actors``
(by default the test speakers of the RAVDESS recipe) one after another, separated by 0.5-3 s of faint noise, written
as 16 kHz FLAC block by block. Then, each in its own process so that the peaks of resident memory do not mix:

- ``decode-whole``: the file decoded at once (``load_audio``, what prediction did before, before cutting it to
  30 s), the baseline for memory;
- ``segment-energy`` and ``segment-silero``: both passes of segmentation alone (``find_segments`` in blocks, then
  ``cut_segments``), nothing predicted;
- ``predict``: ``abhinaya predict RUN_DIR RECORDING -o OUT.csv`` (Silero VAD, default options) with the member run
  folder ``--run`` (read only; S1 or egemaps).

Every mode first imports the same modules (torch included); the clock starts after. Reports seconds, real-time
factor (processing seconds per second of audio) and peak RSS for each, the segments found, and the agreement of
each segment's predicted class with the label of the RAVDESS file it overlaps most (files of speakers the run was not
trained on, when ``--actors`` are its test speakers).
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RATE = 16_000


def make_recording(data: Path, actors: list[str], minutes: float, path: Path, seed: int = 0) -> list[dict]:
    """Write the recording; returns the placed files: ``start``, ``end`` (seconds), ``label``, ``source``."""
    import numpy as np
    import soundfile as sf

    from abhinaya.audio import load_audio
    from abhinaya.corpora import prepare_ravdess

    rows = [u for u in prepare_ravdess(data, check="header").utterances if u.speaker in set(actors)]
    if not rows:
        raise SystemExit(f"no RAVDESS files of actors {actors} under {data}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))
    placed, t, i = [], 0.0, 0
    target = minutes * 60.0
    with sf.SoundFile(str(path), "w", samplerate=RATE, channels=1, subtype="PCM_16", format="FLAC") as out:
        while t < target:
            gap = 0.003 * rng.standard_normal(int(rng.uniform(0.5, 3.0) * RATE)).astype(np.float32)
            out.write(gap)
            t += gap.shape[0] / RATE
            utt = rows[order[i % len(rows)]]
            i += 1
            wave = load_audio(utt.audio, RATE)
            out.write(wave)
            placed.append({"start": t, "end": t + wave.shape[0] / RATE, "label": utt.label, "source": utt.id})
            t += wave.shape[0] / RATE
    return placed


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_child(mode: str, recording: str, run: str | None, out: str) -> dict:
    # The same imports for every mode (torch comes with abhinaya.predict), before the clock starts.
    from abhinaya.audio import load_audio
    from abhinaya.cli import main
    from abhinaya.predict.segments import SegmentConfig, cut_segments, find_segments, make_detector

    base_rss = peak_rss_mb()
    start = time.perf_counter()
    result: dict = {"mode": mode, "rss_after_imports_mb": base_rss}
    if mode == "decode-whole":
        wave = load_audio(recording, RATE)
        result["samples"] = int(wave.shape[0])
    elif mode.startswith("segment-"):
        config = SegmentConfig(vad=mode.removeprefix("segment-"))
        detector = make_detector(config, print)
        found = find_segments(recording, "talk", config, detector)
        detected = time.perf_counter() - start
        samples = sum(w.shape[0] for _, w in cut_segments(recording, found.segments, RATE, config.block_seconds))
        result.update(detector=found.detector, segments=len(found.segments), speech_seconds=found.speech_seconds,
                      vad_seconds=detected, cut_samples=samples,
                      mean_segment=found.speech_seconds / max(1, len(found.segments)),
                      longest_segment=max((s.duration for s in found.segments), default=0.0))
    elif mode == "predict":
        code = main(["predict", run, recording, "-o", out, "--no-progress"])
        result["exit"] = code
    else:
        raise SystemExit(f"unknown mode {mode}")
    result["seconds"] = time.perf_counter() - start
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def agreement(out: Path, placed: list[dict]) -> dict:
    """Share of segments whose class is the label of the file they overlap most, and of the files' time covered."""
    import numpy as np

    with open(out.with_name(out.stem + ".segments.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    starts = np.array([p["start"] for p in placed])
    ends = np.array([p["end"] for p in placed])
    hits = matched = 0
    covered = 0.0
    for row in rows:
        a, b = float(row["start"]), float(row["end"])
        overlap = np.clip(np.minimum(ends, b) - np.maximum(starts, a), 0, None)
        covered += float(overlap.sum())
        if overlap.max() > 0:
            matched += 1
            hits += placed[int(overlap.argmax())]["label"] == row["EmoClass"]
    speech = float((ends - starts).sum())
    segment_time = sum(float(r["end"]) - float(r["start"]) for r in rows)
    return {
        "segments": len(rows),
        "segments_on_a_file": matched,
        "label_agreement": hits / max(1, matched),
        "file_time_covered": covered / speech,
        "segment_time_on_files": covered / max(segment_time, 1e-9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/ravdess")
    parser.add_argument("--run", help="member run folder (read only)")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--actors", default="17,18,19,20")
    parser.add_argument("--modes", default="decode-whole,segment-energy,segment-silero,predict")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--recording", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.recording, args.run, args.out)))
        return
    modes = [m for m in args.modes.split(",") if m]
    if "predict" in modes and not args.run:
        raise SystemExit("--run RUN_DIR is needed for the predict mode")
    actors = [f"{int(a):02d}" for a in args.actors.split(",")]
    with tempfile.TemporaryDirectory(prefix="abhinaya-long-audio-") as tmp:
        recording = Path(tmp) / "talk.flac"
        began = time.perf_counter()
        placed = make_recording(Path(args.data), actors, args.minutes, recording)
        import soundfile as sf

        seconds = sf.info(str(recording)).duration
        print(f"recording: {seconds / 60:.1f} min, {len(placed)} RAVDESS files of actors {','.join(actors)}, "
              f"{recording.stat().st_size / 1e6:.0f} MB FLAC, made in {time.perf_counter() - began:.0f} s", flush=True)
        results = []
        for mode in modes:
            out = Path(tmp) / "p.csv"
            command = [sys.executable, __file__, "--child", mode, "--recording", str(recording), "--out", str(out)]
            if args.run:
                command += ["--run", args.run]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"{mode} failed ({done.returncode})")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["rtf"] = result["seconds"] / seconds
            if mode == "predict":
                result.update(agreement(out, placed))
                result["messages"] = [line for line in done.stderr.splitlines() if "cut into" in line]
            results.append(result)
            print(json.dumps(result), flush=True)
    print()
    print(f"| mode | seconds | real-time factor | peak RSS (MB) |  ({seconds / 60:.1f} min of audio)")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['mode']} | {r['seconds']:.1f} | {r['rtf']:.4f} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
