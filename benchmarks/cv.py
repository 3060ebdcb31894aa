"""Speaker-independent cross-validation of the speech members against a frozen-encoder baseline.

    python benchmarks/cv.py --corpus ravdess --data ../shared/data/ravdess --out runs/cv-ravdess
    python benchmarks/cv.py --corpus emodb --data ../shared/data/emodb --folds 4 --out runs/cv-emodb
    python benchmarks/cv.py --corpus ravdess --data ../shared/data/ravdess --members s2 --only-folds 1 \
        --out runs/cv-ravdess
    python benchmarks/cv.py --corpus ravdess --data ../shared/data/ravdess --members st1 \
        --manifest ravdess-transcribed.jsonl --out runs/cv-ravdess

Folds are contiguous blocks of the sorted speakers (RAVDESS, 5 folds: actors
1-4, 5-8, 9-12, 13-16, 17-20; EmoDB, 4 folds of two speakers). For each fold
the test speakers are never trained on or used for selection; the dev
speakers (for S1's model selection and the baseline's layer choice) are taken
from the next fold and are not trained on either. With ``--no-dev`` no dev
speakers are held out, and the trained members train on every speaker outside
the test fold (for recipes that select nothing on dev).

Members, side by side on the same folds:
- ``frozen``: the frozen Whisper-base encoder on the true length of the audio,
  mean+std pooling of one hidden layer (chosen on dev), logistic regression.
- ``s1``, ``s2``, ``st1``: the shipped recipe ``recipes/<corpus>/<member>.yaml``
  (or ``--recipe`` for a single member), trained per fold with ``abhinaya train``.
  ST1 needs transcripts: the RAVDESS preparer fills each file's known statement (Whisper-base transcribes them
  at 0.6% WER, BENCHMARKS.md); elsewhere ``--manifest`` names a manifest filled by ``abhinaya transcribe``.

Per-fold and mean macro-F1, UA and WA, the training wall time, the seconds of
each epoch and the prediction speed on the test speakers are written to
``OUT/results.json`` and printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def folds_for(corpus: str, data: Path, num_folds: int, dev: bool = True):
    from abhinaya.corpora import PREPARERS
    from abhinaya.corpora.splits import sorted_speakers, speaker_folds

    utterances = PREPARERS[corpus](data, check="header").utterances
    folds = speaker_folds(sorted_speakers(utterances), num_folds)
    plans = []
    for k, test in enumerate(folds):
        following = folds[(k + 1) % num_folds]
        held = (following[-2:] if len(following) > 2 else following[-1:]) if dev else []
        plans.append({"fold": k + 1, "test": test, "dev": held})
    return utterances, plans


def frozen_features(utterances, cache: Path, encoder: str = "whisper-base") -> dict[str, np.ndarray]:
    """(layers, 2*D) mean+std of every hidden state, per utterance, cached."""
    if cache.is_file():
        data = np.load(cache)
        return {k: data[k] for k in data.files}
    import torch
    from tqdm import tqdm

    from abhinaya.data.audio import AudioDataset, collate_audio
    from abhinaya.data.audio import LengthBucketSampler as Sampler
    from abhinaya.models.ssl_classifier import SSLClassifier, SSLClassifierConfig
    from abhinaya.nn.pooling import MeanStdPooling

    model = SSLClassifier.from_pretrained_encoder(SSLClassifierConfig(encoder=encoder, freeze="encoder")).eval()
    dataset = AudioDataset(utterances, None, train=False)
    pool = MeanStdPooling()
    out: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for indices in tqdm(list(Sampler(dataset.lengths, 16, shuffle=False)), desc="frozen features"):
            batch = collate_audio([dataset[i] for i in indices])
            states, mask = model.hidden_states(batch["waveforms"], batch["lengths"])
            stacked = torch.stack([pool(states[i], mask) for i in sorted(states)], dim=1)  # (B, L, 2D)
            for j, utt_id in enumerate(batch["ids"]):
                out[utt_id] = stacked[j].numpy()
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def run_frozen(utterances, plan, features, labels) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from abhinaya.evaluation.metrics import classification_report

    def subset(speakers):
        chosen = [u for u in utterances if u.speaker in speakers]
        return np.stack([features[u.id] for u in chosen]), [u.label for u in chosen]

    held = set(plan["test"]) | set(plan["dev"])
    train_speakers = {u.speaker for u in utterances} - held
    x_train, y_train = subset(train_speakers)
    x_dev, y_dev = subset(set(plan["dev"]))
    x_test, y_test = subset(set(plan["test"]))

    def fit(x, y):
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000, class_weight="balanced")).fit(x, y)

    dev_scores = []
    for layer in range(x_train.shape[1]):
        model = fit(x_train[:, layer], y_train)
        dev_scores.append(classification_report(y_dev, list(model.predict(x_dev[:, layer])), labels)["macro_f1"])
    best = int(np.argmax(dev_scores))
    model = fit(np.concatenate([x_train[:, best], x_dev[:, best]]), y_train + y_dev)
    report = classification_report(y_test, list(model.predict(x_test[:, best])), labels)
    return {"layer": best, **{k: report[k] for k in ("macro_f1", "ua", "wa")}}


TRAINED_MEMBERS = ("s1", "s2", "st1")


def run_member(member: str, plan, args, out: Path) -> dict:
    from abhinaya.evaluation.evaluate import evaluate_predictions
    from abhinaya.manifest import read_manifest
    from abhinaya.predictions import read_predictions

    run = out / f"{member}-fold{plan['fold']}"
    recipe = args.recipe or f"recipes/{args.corpus}/{member}.yaml"
    source = f"data.manifest={Path(args.manifest).resolve()}" if args.manifest else f"data.root={Path(args.data).resolve()}"
    sets = [
        source,
        f"data.dev_speakers={json.dumps(plan['dev'])}",
        f"data.test_speakers={json.dumps(plan['test'])}",
        "train.progress=false",
    ] + list(args.set or [])
    cmd = [sys.executable, "-m", "abhinaya.cli", "train", recipe, "-o", str(run)]
    for item in sets:
        cmd += ["--set", item]
    if (run / "summary.json").is_file():
        pass  # finished earlier: reuse
    else:
        if (run / "config.yaml").is_file():
            cmd.append("--resume")
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        (run / "wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    manifest = run / "data" / "splits.jsonl"
    predictions = run / "test_predictions.csv"
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "abhinaya.cli", "predict", str(run), str(manifest), "--split", "test",
         "-o", str(predictions), "--no-progress"],
        check=True,
    )
    predict_seconds = time.perf_counter() - start
    table = read_predictions(predictions)
    report = evaluate_predictions(table, read_manifest(manifest), split="test")
    summary = json.loads((run / "summary.json").read_text())
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    wall = run / "wall_seconds.txt"
    return {
        "best_epoch": summary["best_epoch"],
        "kept_epoch": summary.get("kept_epoch", summary["best_epoch"]),
        **{k: report[k] for k in ("macro_f1", "ua", "wa")},
        "train_wall_seconds": float(wall.read_text()) if wall.is_file() else None,
        "epoch_train_seconds": [round(e["train_seconds"], 1) for e in epochs],
        # The whole predict command: model loading included.
        "predict_seconds": round(predict_seconds, 1),
        "predict_utterances": len(table.ids),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=["ravdess", "emodb"], required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--recipe", help="recipe of the one trained member run (default: recipes/<corpus>/<member>.yaml)")
    parser.add_argument("--members", default="frozen,s1", help="comma-separated: frozen, s1, s2, st1")
    parser.add_argument("--manifest", help="a prepared manifest (with transcripts, for st1) instead of --data")
    parser.add_argument("--only-folds", help="comma-separated fold numbers to run (default: all)")
    parser.add_argument(
        "--no-dev",
        action="store_true",
        help="hold out no dev speakers: the trained members train on every speaker outside the test fold "
        "(for recipes that select nothing on dev, train.keep: last or average)",
    )
    parser.add_argument("--set", action="append", help="recipe override passed to abhinaya train")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from abhinaya.labels import CORPUS_LABEL_SETS

    labels = list(CORPUS_LABEL_SETS[args.corpus])
    from abhinaya.corpora.common import PrepareError

    try:
        utterances, plans = folds_for(args.corpus, Path(args.data), args.folds, dev=not args.no_dev)
    except (PrepareError, ValueError) as err:
        parser.error(str(err))
    if args.only_folds:
        wanted = {int(k) for k in args.only_folds.split(",")}
        plans = [p for p in plans if p["fold"] in wanted]
    members = args.members.split(",")
    if args.no_dev and "frozen" in members:
        parser.error("--no-dev: the frozen baseline chooses its layer on dev; run it without --no-dev")
    unknown = set(members) - {"frozen", *TRAINED_MEMBERS}
    if unknown:
        parser.error(f"unknown members: {', '.join(sorted(unknown))}")
    if args.recipe and len(set(members) & set(TRAINED_MEMBERS)) > 1:
        parser.error("--recipe applies to a single trained member")
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    features = frozen_features(utterances, out / "frozen_features.npz") if "frozen" in members else None
    for plan in plans:
        key = f"fold{plan['fold']}"
        entry = results.setdefault(key, {"test_speakers": plan["test"], "dev_speakers": plan["dev"]})
        if "frozen" in members:
            entry["frozen"] = run_frozen(utterances, plan, features, labels)
        for member in TRAINED_MEMBERS:
            if member in members:
                entry[member] = run_member(member, plan, args, out)
        results_file.write_text(json.dumps(results, indent=2) + "\n")
        print(key, json.dumps(entry))

    # Report every member measured so far (a run of one member keeps the other's earlier results).
    members = [m for m in ("frozen", *TRAINED_MEMBERS) if any(m in e for e in results.values())]
    print("\n| fold | test speakers | " + " | ".join(f"{m} macro-F1 / UA / WA" for m in members) + " |")
    print("|---|---|" + "---|" * len(members))
    for key, entry in sorted(results.items()):
        cells = []
        for m in members:
            r = entry.get(m)
            cells.append(f"{r['macro_f1']:.3f} / {r['ua']:.3f} / {r['wa']:.3f}" if r else "—")
        print(f"| {key} | {', '.join(entry['test_speakers'])} | " + " | ".join(cells) + " |")
    for m in members:
        rows = [e[m] for e in results.values() if m in e]
        if rows:
            mean = {k: float(np.mean([r[k] for r in rows])) for k in ("macro_f1", "ua", "wa")}
            print(f"mean {m} over {len(rows)} fold(s): " + ", ".join(f"{k} {v:.3f}" for k, v in mean.items()))


if __name__ == "__main__":
    main()
