"""Speed of the speech LLM (S2) on RAVDESS: training steps with the frozen encoder run vs. read from the feature cache,
and inference utterances per second, in the same process.

    python benchmarks/speech_llm_speed.py --data ../shared/data/ravdess --utterances 64 --set model.layer=12

The same utterances are trained on twice with batch 8: first with an empty feature cache (Whisper runs and its output
is written), then again (Whisper's output is read back). The ratio of the two is the saving of the cache per step.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="RAVDESS folder")
    parser.add_argument("--recipe", default="recipes/ravdess/s2.yaml")
    parser.add_argument("--utterances", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--set", action="append", default=[], help="recipe override")
    args = parser.parse_args()

    from abhinaya.corpora import prepare_corpus
    from abhinaya.labels import CORPUS_LABEL_SETS
    from abhinaya.members import get_member
    from abhinaya.runs import load_recipe

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        utterances = prepare_corpus("ravdess", args.data, f"{tmp}/m.jsonl", check="header").utterances
        random.Random(0).shuffle(utterances)
        utterances = utterances[: args.utterances]
        recipe = load_recipe(args.recipe, [f"model.feature_cache={tmp}/features", *args.set])
        member = get_member(recipe.member)(recipe)
        labels = CORPUS_LABEL_SETS["ravdess"]
        model = member.build(labels, pretrained=True)[0]
        data = member.dataset(utterances, labels, train=True)
        optimizer = torch.optim.AdamW(member.param_groups(model))
        batches = [list(range(i, min(i + args.batch_size, len(data)))) for i in range(0, len(data), args.batch_size)]

        def train_pass() -> float:
            model.train()
            start = time.perf_counter()
            for indices in batches:
                batch = member.collate([data[i] for i in indices])
                loss = torch.nn.functional.cross_entropy(member.logits(model, batch), batch["labels"])
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
            return (time.perf_counter() - start) / len(batches)

        encoder_runs = train_pass()
        cached = train_pass()
        model.eval()
        start = time.perf_counter()
        with torch.inference_mode():
            for indices in batches:
                member.logits(model, member.collate([data[i] for i in indices]))
        inference = len(data) / (time.perf_counter() - start)
        audio_seconds = sum(u.duration or 0.0 for u in utterances)
        result = {
            "utterances": len(data),
            "batch_size": args.batch_size,
            "overrides": args.set,
            "train_step_seconds_encoder_run": round(encoder_runs, 3),
            "train_step_seconds_cached": round(cached, 3),
            "cache_speedup": round(encoder_runs / cached, 2),
            "inference_utterances_per_second_cached": round(inference, 2),
            "audio_seconds": round(audio_seconds, 1),
            "torch_threads": torch.get_num_threads(),
        }
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
