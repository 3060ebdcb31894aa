"""S1 on the CPU: PyTorch against onnxruntime running the exported ONNX file, in the same process, on the same real
RAVDESS audio, with the same number of threads.

    python benchmarks/onnx_speed.py --run RUN_DIR --data ../shared/data/ravdess [--onnx /tmp/s1.onnx] [--threads 2]

The run folder is exported first (``abhinaya export onnx``, into ``--onnx``; an existing file is reused with
``--reuse``), checked at export on a few of the files. Then four length classes of real speech are predicted by
both backends:

- ``1 s``: the first second of a file;
- ``file``: whole RAVDESS files (about 3-5 s);
- ``15 s``: four files of one actor joined end to end;
- ``28 s``: eight files of one actor joined, cut to 28 s (under Whisper's 30 s window).

Each class runs one utterance at a time (batch 1, the service's case) and, for the short classes, in length-sorted
batches of ``--batch-size`` as ``abhinaya predict`` forms them. Each measurement is the median of ``--repeats``
passes after a warm-up, the backends alternating. Reported: utterances per second, real-time factor (processing
seconds per second of audio), the speed ratio ONNX / PyTorch, and the largest absolute difference of the logits
(and of the probabilities) between the backends on every utterance, with the share of equal top classes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def length_classes(
    data: Path, per_class: int, long_count: int, seed: int = 0
) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Real-speech utterances of four length classes (see the module docstring), deterministic given ``seed``."""
    from abhinaya.audio import load_audio
    from abhinaya.corpora import prepare_ravdess

    utterances = sorted(prepare_ravdess(data, check="header").utterances, key=lambda u: u.id)
    rng = np.random.default_rng(seed)
    picked = [utterances[i] for i in sorted(rng.choice(len(utterances), size=per_class, replace=False))]
    waves = {u.id: load_audio(u.audio, SAMPLE_RATE) for u in picked}
    classes = {
        "1 s": [(f"{u.id}[:1s]", waves[u.id][:SAMPLE_RATE]) for u in picked],
        "file": [(u.id, waves[u.id]) for u in picked],
    }
    by_speaker: dict[str, list] = {}
    for u in utterances:
        by_speaker.setdefault(str(u.speaker), []).append(u)
    speakers = sorted(by_speaker)
    for name, count, cut in (("15 s", 4, None), ("28 s", 8, 28 * SAMPLE_RATE)):
        items = []
        for k in range(long_count):
            pool = by_speaker[speakers[(k * 3 + len(name)) % len(speakers)]]
            chosen = [pool[i] for i in sorted(rng.choice(len(pool), size=count, replace=False))]
            joined = np.concatenate([load_audio(u.audio, SAMPLE_RATE) for u in chosen])
            items.append(("+".join(u.id for u in chosen), joined[:cut] if cut else joined))
        classes[name] = items
    return classes


def batches(items: list[tuple[str, np.ndarray]], batch_size: int):
    """Length-sorted (longest first) zero-padded batches, as the prediction engine forms them."""
    import torch

    order = sorted(range(len(items)), key=lambda i: -len(items[i][1]))
    out = []
    for start in range(0, len(order), batch_size):
        group = order[start : start + batch_size]
        lengths = torch.tensor([len(items[i][1]) for i in group], dtype=torch.long)
        waves = torch.zeros(len(group), int(lengths.max()))
        for row, i in enumerate(group):
            waves[row, : len(items[i][1])] = torch.from_numpy(items[i][1])
        out.append((group, waves, lengths))
    return out


def run_pass(model, prepared) -> tuple[float, dict[int, np.ndarray]]:
    import torch

    logits: dict[int, np.ndarray] = {}
    start = time.perf_counter()
    with torch.inference_mode():
        for group, waves, lengths in prepared:
            out = model(waves, lengths)
            for row, i in enumerate(group):
                logits[i] = out[row].float().numpy()
    return time.perf_counter() - start, logits


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="an S1 run folder (read only)")
    parser.add_argument("--data", default="../shared/data/ravdess", help="RAVDESS folder")
    parser.add_argument("--onnx", default="/tmp/abhinaya-onnx-bench/s1.onnx", help="where the export is written")
    parser.add_argument("--reuse", action="store_true", help="reuse an existing --onnx file instead of exporting")
    parser.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 4),
                        help="threads of both backends (torch.set_num_threads, onnxruntime intra-op)")
    parser.add_argument("--per-class", type=int, default=24, help="utterances of the 1 s and file classes")
    parser.add_argument("--long", type=int, default=4, help="utterances of the 15 s and 28 s classes")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size of the batched runs")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per measurement (median)")
    parser.add_argument("--out", default="/tmp/abhinaya-onnx-bench/results.json", help="JSON results")
    args = parser.parse_args()

    import torch

    from abhinaya.export import export_onnx, load_onnx_model, read_sidecar
    from abhinaya.runs import load_run

    torch.set_num_threads(args.threads)
    data = Path(args.data)
    classes = length_classes(data, args.per_class, args.long)
    onnx_path = Path(args.onnx)
    export_seconds = None
    if not (args.reuse and onnx_path.is_file()):
        check = [Path(u) for u in sorted(data.glob("Actor_0[12]/*"))[:4]]
        started = time.perf_counter()
        result = export_onnx(args.run, onnx_path, check_audio=check, report=lambda m: print(m, file=sys.stderr))
        export_seconds = time.perf_counter() - started
        print(f"exported {onnx_path} ({result.exporter}, opset {result.opset}) in {export_seconds:.1f} s: "
              f"max |logit diff| {result.max_abs_logit_diff:.2e} at export", file=sys.stderr)
    sidecar = read_sidecar(onnx_path)

    torch_model = load_run(args.run).model.eval()
    onnx_model = load_onnx_model(onnx_path, threads=args.threads)
    backends = {"pytorch": torch_model, "onnxruntime": onnx_model}

    rows = []
    for name, items in classes.items():
        audio_seconds = sum(len(w) for _, w in items) / SAMPLE_RATE
        sizes = [1] + ([args.batch_size] if name in ("1 s", "file") else [])
        for batch_size in sizes:
            prepared = batches(items, batch_size)
            times: dict[str, list[float]] = {b: [] for b in backends}
            outputs: dict[str, dict[int, np.ndarray]] = {}
            for backend, model in backends.items():  # warm-up (first run of a shape, thread pools)
                run_pass(model, prepared[:1])
            for _ in range(args.repeats):
                for backend, model in backends.items():
                    seconds, logits = run_pass(model, prepared)
                    times[backend].append(seconds)
                    outputs[backend] = logits
            a = np.stack([outputs["pytorch"][i] for i in range(len(items))])
            b = np.stack([outputs["onnxruntime"][i] for i in range(len(items))])
            row = {
                "class": name,
                "utterances": len(items),
                "mean_seconds": audio_seconds / len(items),
                "batch_size": batch_size,
                "max_abs_logit_diff": float(np.abs(a - b).max()),
                "max_abs_prob_diff": float(np.abs(softmax(a) - softmax(b)).max()),
                "same_top_class": float((a.argmax(-1) == b.argmax(-1)).mean()),
            }
            for backend in backends:
                t = float(np.median(times[backend]))
                row[f"{backend}_utt_per_s"] = len(items) / t
                row[f"{backend}_rtf"] = t / audio_seconds
            row["speedup"] = row["pytorch_rtf"] / row["onnxruntime_rtf"]
            rows.append(row)
            print(f"{name:>5} batch {batch_size}: pytorch {row['pytorch_utt_per_s']:.2f} utt/s, onnxruntime "
                  f"{row['onnxruntime_utt_per_s']:.2f} utt/s (x{row['speedup']:.2f}); max |logit diff| "
                  f"{row['max_abs_logit_diff']:.2e}", file=sys.stderr)

    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": _commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({platform.processor() or platform.platform()})",
        "threads": args.threads,
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
        "exporter": sidecar["exporter"],
        "opset": sidecar["opset"],
        "export_seconds": export_seconds,
        "export_validation": sidecar["validation"]["max_abs_logit_diff"],
        "onnx_mb": onnx_path.stat().st_size / 2**20,
        "run": str(Path(args.run).resolve()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")

    print(f"S1 CPU inference, PyTorch vs onnxruntime ({meta['date']}, {meta['machine']}, {args.threads} threads, "
          f"commit {meta['commit']}, torch {meta['torch']}, onnxruntime {meta['onnxruntime']}, "
          f"{meta['exporter']} exporter opset {meta['opset']})")
    print(f"`{meta['command']}`\n")
    print("| length | n | batch | PyTorch utt/s | ORT utt/s | PyTorch RTF | ORT RTF | ORT speed-up "
          "| max abs logit diff | max abs prob diff | same top class |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['class']} ({r['mean_seconds']:.1f} s) | {r['utterances']} | {r['batch_size']} "
              f"| {r['pytorch_utt_per_s']:.2f} | {r['onnxruntime_utt_per_s']:.2f} | {r['pytorch_rtf']:.4f} "
              f"| {r['onnxruntime_rtf']:.4f} | {r['speedup']:.2f}x | {r['max_abs_logit_diff']:.1e} "
              f"| {r['max_abs_prob_diff']:.1e} | {100 * r['same_top_class']:.0f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
