"""S1 inference speed: batched true-length Whisper encoding (ours) against the
naive way (one file at a time, padded to 30 s as Whisper's feature extractor
does), on the same utterances, encoder and head, in the same run.

    python benchmarks/s1_speed.py --data ../shared/data/ravdess [--run RUN_DIR] [--num 120]

Reports utterances per second, real-time factor (processing seconds per
second of audio), the speed ratio, and each method's peak resident memory
(each method runs in its own subprocess so the peaks do not mix). With
--run, the trained S1 of that run folder is used; otherwise Whisper-base with
a random head (the speed is the same).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def _utterances(data: Path, num: int):
    from abhinaya.corpora import prepare_ravdess

    result = prepare_ravdess(data, check="header")
    utts = sorted(result.utterances, key=lambda u: u.id)
    step = max(1, len(utts) // num)
    return utts[::step][:num]


def _model(run: str | None):
    import torch

    if run:
        from abhinaya.runs import load_run

        loaded = load_run(run)
        return loaded.model, loaded.member
    from abhinaya.labels import CORPUS_LABEL_SETS
    from abhinaya.members.s1 import S1Member, S1Recipe

    recipe = S1Recipe()
    member = S1Member(recipe)
    torch.manual_seed(0)
    return member.build(CORPUS_LABEL_SETS["ravdess"], pretrained=True)[0].eval(), member


def run_method(method: str, data: str, run: str | None, num: int, batch_size: int) -> dict:
    import torch
    import torch.nn.functional as F

    from abhinaya.audio import load_audio

    utts = _utterances(Path(data), num)
    model, member = _model(run)
    audio_seconds = sum(u.duration for u in utts)
    start = time.perf_counter()
    if method == "ours":
        from abhinaya.predict.engine import predict_probabilities

        dataset = member.dataset(utts, None, train=False)
        ids, probs = predict_probabilities(member, model, dataset, batch_size, progress=False)
    else:
        from transformers import WhisperFeatureExtractor

        extractor = WhisperFeatureExtractor(feature_size=80)
        encoder = model.encoder
        probs = []
        with torch.inference_mode():
            for utt in utts:
                wave = load_audio(utt.audio, 16000)
                features = extractor(wave, sampling_rate=16000, return_tensors="pt").input_features  # (1, 80, 3000)
                states = encoder(features, output_hidden_states=True).hidden_states  # 1500 frames each
                mixed = model.mix_layers({i: states[i] for i in model.layer_indices})
                logits = model.head(model.pooling(mixed, torch.ones(mixed.shape[:2], dtype=torch.bool)))
                probs.append(F.softmax(logits, -1).numpy())
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "method": method,
        "utterances": len(utts),
        "audio_seconds": round(audio_seconds, 1),
        "seconds": round(seconds, 2),
        "utterances_per_second": round(len(utts) / seconds, 2),
        "real_time_factor": round(seconds / audio_seconds, 4),
        "peak_rss_mb": round(peak_mb),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="RAVDESS folder")
    parser.add_argument("--run", help="trained S1 run folder (default: Whisper-base + random head)")
    parser.add_argument("--num", type=int, default=120, help="utterances (spread over all actors)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--method", choices=["ours", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:  # child process: one method, JSON on stdout
        print(json.dumps(run_method(args.method, args.data, args.run, args.num, args.batch_size)))
        return
    results = {}
    for method in ("ours", "naive"):
        cmd = [sys.executable, __file__, "--data", args.data, "--num", str(args.num), "--batch-size", str(args.batch_size), "--method", method]
        if args.run:
            cmd += ["--run", args.run]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[method] = json.loads(out.strip().splitlines()[-1])
        print(json.dumps(results[method]))
    ratio = results["naive"]["seconds"] / results["ours"]["seconds"]
    print(json.dumps({"speedup_ours_vs_naive_30s_padding": round(ratio, 2)}))


if __name__ == "__main__":
    main()
