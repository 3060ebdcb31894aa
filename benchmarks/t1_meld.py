"""T1 (zero-shot LLM) on MELD transcripts: quality and speed of each scoring way.

    python benchmarks/t1_meld.py --data ../shared/data/meld --recipe recipes/meld/t1.yaml --variant recipe: \
        --variant "plain:reply_template='{word}';label_words={}" --threads 1 --out runs/t1-meld
    python benchmarks/t1_meld.py --data ../shared/data/meld --eval-split train --limit 500 \\
        --calibration-utterances 500 --generate-limit 0 \\
        --variant "meld_words:label_words={happy: joy, angry: anger, sad: sadness}" --out runs/t1-train

For each variant (``NAME:key=value;key=value``, ZeroShotConfig fields as YAML values
applied on top of ``--recipe``'s model section, or of the dataclass defaults) the LLM scores the
evaluation split once (constrained: label-word log-likelihoods), and the
figures are reported without calibration and with ``train_mean`` calibration
(the bias estimated on ``--calibration-utterances`` training transcripts, the
sample ``abhinaya train`` draws). When the evaluation split is ``train``, the
evaluated utterances are a sample that excludes the calibration sample.
``--generate-limit N`` adds free generation (greedy, and the paper's
temperature 0.7 / top-p 0.7) on N evaluation utterances, mapped to classes.
``--speed-utterances N`` times constrained scoring with and without the
shared key/value cache on N utterances.

Prints Markdown tables (overall, per-class F1) and writes ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    overrides = {}
    for item in filter(None, (part.strip() for part in rest.split(";"))):
        key, _, value = item.partition("=")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:  # e.g. a prompt with ": " in it: taken as text
            overrides[key.strip()] = value
    return name.strip(), overrides


def score_texts(model, texts: list[str], batch_size: int, fn) -> tuple[np.ndarray | list, float]:
    """Run ``fn(model, batch_texts)`` over length-sorted batches; results in input order and seconds."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i].split()))
    results: dict[int, object] = {}
    started = time.perf_counter()
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        output = fn(model, [texts[i] for i in chunk])
        for i, row in zip(chunk, output):
            results[i] = row
    seconds = time.perf_counter() - started
    return [results[i] for i in range(len(texts))], seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/meld", help="MELD folder (train_sent_emo.csv, dev_sent_emo.csv)")
    parser.add_argument("--out", default="runs/t1-meld")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--recipe", help="a T1 recipe whose model section the variants start from")
    parser.add_argument("--eval-split", default="dev", choices=("dev", "train"))
    parser.add_argument("--limit", type=int, default=0, help="evaluate a reproducible sample of this many (0 = all)")
    parser.add_argument("--calibration-utterances", type=int, default=1000)
    parser.add_argument("--generate-limit", type=int, default=200, help="utterances for free generation (0 = skip)")
    parser.add_argument("--speed-utterances", type=int, default=64, help="cache vs plain timing (0 = skip)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", action="append", default=[], help="NAME:key=value;... (repeatable)")
    args = parser.parse_args(argv)

    from abhinaya.corpora import PREPARERS
    from abhinaya.data.text import TextConfig, TextDataset
    from abhinaya.evaluation.metrics import classification_report
    from abhinaya.labels import CORPUS_LABEL_SETS
    from abhinaya.members.t1 import T1Member, T1Recipe
    from abhinaya.models.zero_shot import ZeroShotConfig, ZeroShotLM
    from abhinaya.weights.llm import load_causal_lm, load_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    label_set = CORPUS_LABEL_SETS["meld"]
    labels = list(label_set)
    utterances = [u for u in PREPARERS["meld"](args.data).utterances if u.label in label_set]
    train = [u for u in utterances if u.split == "train"]
    train_set = TextDataset(train, label_set, None, TextConfig(max_words=256), on_error="skip")

    started = time.perf_counter()
    tokenizer = load_tokenizer(args.model)
    lm = load_causal_lm(args.model)
    print(f"loaded {args.model} in {time.perf_counter() - started:.1f} s; {torch.get_num_threads()} thread(s)", file=sys.stderr)

    variants = [parse_variant(v) for v in args.variant] or [("default", {})]
    base: dict = {}
    if args.recipe:
        import dataclasses

        from abhinaya.runs import load_recipe

        base = {f.name: getattr(load_recipe(args.recipe).model, f.name) for f in dataclasses.fields(ZeroShotConfig)}
    rows, per_class, results = [], [], {"args": vars(args), "variants": {}}
    for name, overrides in variants:
        config = ZeroShotConfig(**{**base, "model": args.model, **overrides})
        recipe = T1Recipe(model=config)
        recipe.train.seed = args.seed
        recipe.train.eval_batch_size = args.batch_size
        recipe.model.calibration_utterances = args.calibration_utterances
        member = T1Member(recipe)
        model = ZeroShotLM(lm, tokenizer, label_set, config, seed=args.seed)

        # calibration (the same sample `abhinaya train` draws), timed
        t0 = time.perf_counter()
        used = member.calibrate(model, train_set) if config.calibration != "none" else 0
        calibration_seconds = time.perf_counter() - t0
        bias = model.calibration_bias.clone()

        # evaluation utterances
        if args.eval_split == "dev":
            pool = [u for u in utterances if u.split == "dev"]
        else:
            excluded = set(random.Random(args.seed).sample(range(len(train_set)), min(len(train_set), args.calibration_utterances)))
            pool = [u for i, u in enumerate(train_set.utterances) if i not in excluded]
        if args.limit and args.limit < len(pool):
            pool = sorted(random.Random(args.seed + 1).sample(pool, args.limit), key=lambda u: u.id)
        eval_set = TextDataset(pool, label_set, None, TextConfig(max_words=256), on_error="skip")
        texts, truth = eval_set.texts, [u.label for u in eval_set.utterances]

        scores, seconds = score_texts(model, texts, args.batch_size, lambda m, t: m.label_log_likelihoods(t).numpy())
        scores = np.stack(scores)
        np.savez(
            out / f"scores-{name}.npz", scores=scores, bias=bias.numpy(), truth=np.array([labels.index(t) for t in truth]),
            reply_tokens=np.array([len(r) for r in model.reply_ids]), ids=np.array([u.id for u in eval_set.utterances]),
        )
        variant_results = {"overrides": overrides, "calibration_bias": bias.tolist(), "calibration_utterances": used}
        for calibration, logits in (("none", scores), ("train_mean", scores - bias.numpy())):
            if calibration == "train_mean" and not used:
                continue
            predicted = [labels[i] for i in logits.argmax(axis=1)]
            report = classification_report(truth, predicted, labels)
            speed = len(texts) / seconds
            rows.append((name, "constrained", calibration, len(texts), report, speed))
            per_class.append((name, f"constrained, {calibration}", report))
            variant_results[f"constrained/{calibration}"] = {**report, "utterances_per_second": speed}
        variant_results["calibration_seconds"] = calibration_seconds

        if args.generate_limit:
            subset = sorted(random.Random(args.seed + 2).sample(range(len(texts)), min(args.generate_limit, len(texts))))
            gen_texts = [texts[i] for i in subset]
            gen_truth = [truth[i] for i in subset]
            for setting, temperature in (("greedy", 0.0), ("t0.7/p0.7", 0.7)):
                gen_config = ZeroShotConfig(**{**vars(config), "mode": "generate", "calibration": "none", "temperature": temperature})
                gen_model = ZeroShotLM(lm, tokenizer, label_set, gen_config, seed=args.seed)
                logits, seconds = score_texts(gen_model, gen_texts, args.batch_size, lambda m, t: m(t).numpy())
                predicted = [labels[int(np.argmax(row))] for row in logits]
                report = classification_report(gen_truth, predicted, labels)
                stats = gen_model.reply_stats()
                rows.append((name, f"generate {setting}", f"unmapped {stats['unmapped']}/{stats['replies']}", len(gen_texts), report, len(gen_texts) / seconds))
                per_class.append((name, f"generate {setting}", report))
                variant_results[f"generate/{setting}"] = {**report, "utterances_per_second": len(gen_texts) / seconds, **stats}
        results["variants"][name] = variant_results
        done = {k: round(100 * v["macro_f1"], 2) for k, v in variant_results.items() if isinstance(v, dict) and "macro_f1" in v}
        print(f"{name}: macro-F1 {done}", file=sys.stderr, flush=True)

    if args.speed_utterances:
        config = ZeroShotConfig(model=args.model)
        model = ZeroShotLM(lm, tokenizer, label_set, config, seed=args.seed)
        texts = eval_set.texts[: args.speed_utterances]
        timing = {}
        for reuse in (True, False, True):
            model.config.reuse_prefix_cache = reuse
            _, seconds = score_texts(model, texts, args.batch_size, lambda m, t: m.label_log_likelihoods(t).numpy())
            timing["cache" if reuse else "plain"] = len(texts) / seconds  # the second cache run is kept (warm)
        model.config.reuse_prefix_cache = True
        cached = model.label_log_likelihoods(texts[:8])
        model.config.reuse_prefix_cache = False
        plain = model.label_log_likelihoods(texts[:8])
        timing["max_abs_difference"] = float((cached - plain).abs().max())
        results["speed"] = timing

    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nT1 on MELD {args.eval_split} ({args.model}, {torch.get_num_threads()} thread(s))\n")
    print("| variant | mode | calibration | utterances | macro-F1 | weighted-F1 | accuracy | UA | utt/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, mode, calibration, count, report, speed in rows:
        print(
            f"| {name} | {mode} | {calibration} | {count} | {100 * report['macro_f1']:.2f} | "
            f"{100 * report['weighted_f1']:.2f} | {100 * report['wa']:.2f} | {100 * report['ua']:.2f} | {speed:.2f} |"
        )
    print("\nPer-class F1 (%)\n")
    print("| variant | way | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for name, way, report in per_class:
        print(f"| {name} | {way} | " + " | ".join(f"{100 * report['per_class'][l]['f1']:.1f}" for l in labels) + " |")
    if "speed" in results:
        s = results["speed"]
        print(
            f"\nconstrained scoring speed: shared key/value cache {s['cache']:.2f} utt/s, one forward per "
            f"(utterance, class) {s['plain']:.2f} utt/s ({s['cache'] / s['plain']:.1f}x); "
            f"max |difference| of the scores {s['max_abs_difference']:.1e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
