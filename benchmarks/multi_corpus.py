"""S1 on RAVDESS + EmoDB in one model, and the cross-corpus matrix: train on each corpus and on the union, test on
each corpus's test speakers.

    python benchmarks/multi_corpus.py --data ../shared/data --out runs/multi [--models union,ravdess,emodb]
        [--ravdess-test 15,16,17,18] [--emodb-test 08,09]

Models (each trained once into ``OUT/<model>``; a finished run is reused, an interrupted one resumed):

- ``union``: ``recipes/multi/s1.yaml`` (dev speakers RAVDESS 19-20, EmoDB 14-15, as the recipe says);
- ``ravdess``: ``recipes/ravdess/s1.yaml`` (dev 19-20); ``emodb``: ``recipes/emodb/s1.yaml`` (dev 14-15).

Each gets the test speakers of ``--ravdess-test`` / ``--emodb-test`` moved out of training. Every model predicts the
test speakers of both corpora (``abhinaya predict``, with and without per-speaker normalisation). A model is scored
on a corpus over the classes both share (a RAVDESS model on EmoDB: six classes, no boredom; an EmoDB model on
RAVDESS: six, no calm or surprise), each prediction chosen among those classes. Prints one JSON object and writes it
to ``OUT/results.json``; training times come from each run's ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RECIPES = {"union": "recipes/multi/s1.yaml", "ravdess": "recipes/ravdess/s1.yaml", "emodb": "recipes/emodb/s1.yaml"}


def run(command: list[str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("a") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed; see {log}")
    return time.perf_counter() - start


def train_overrides(model: str, data: Path, ravdess_test: list[str], emodb_test: list[str]) -> list[str]:
    if model == "union":
        return [f"data.roots.ravdess={data / 'ravdess'}", f"data.roots.emodb={data / 'emodb'}",
                f"data.corpora.ravdess.test_speakers={json.dumps(ravdess_test)}",
                f"data.corpora.emodb.test_speakers={json.dumps(emodb_test)}"]
    test = ravdess_test if model == "ravdess" else emodb_test
    return [f"data.root={data / model}", f"data.test_speakers={json.dumps(test)}"]


def test_manifests(data: Path, out: Path, ravdess_test: list[str], emodb_test: list[str]) -> dict[str, Path]:
    """One manifest per corpus of its test speakers (prepared once)."""
    from abhinaya.corpora import prepare_corpus
    from abhinaya.manifest import read_manifest, write_manifest

    paths = {}
    for corpus, speakers in (("ravdess", ravdess_test), ("emodb", emodb_test)):
        path = out / f"test_{corpus}.jsonl"
        if not path.is_file():
            full = out / f"{corpus}.jsonl"
            prepare_corpus(corpus, data / corpus, full)
            write_manifest(path, [u for u in read_manifest(full) if u.speaker in set(speakers)])
        paths[corpus] = path
    return paths


def score(predictions: Path, manifest: Path) -> dict:
    """Macro-F1 and UA over the classes the model and the corpus share."""
    import numpy as np

    from abhinaya.evaluation.metrics import classification_report
    from abhinaya.manifest import read_manifest
    from abhinaya.predictions import read_predictions

    table = read_predictions(predictions)
    truth = {u.id: u.label for u in read_manifest(manifest)}
    shared = [c for c in table.label_set if c in set(truth.values())]
    columns = [list(table.label_set).index(c) for c in shared]
    rows = [i for i, utt_id in enumerate(table.ids) if truth.get(utt_id) in shared]
    chosen = [shared[int(np.argmax(table.probs[i, columns]))] for i in rows]
    report = classification_report([truth[table.ids[i]] for i in rows], chosen, shared)
    return {"macro_f1": round(report["macro_f1"], 4), "ua": round(report["ua"], 4), "classes": len(shared),
            "utterances": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", default="union,ravdess,emodb")
    parser.add_argument("--ravdess-test", default="15,16,17,18")
    parser.add_argument("--emodb-test", default="08,09")
    args = parser.parse_args()
    data, out = Path(args.data).resolve(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ravdess_test, emodb_test = args.ravdess_test.split(","), args.emodb_test.split(",")
    manifests = test_manifests(data, out, ravdess_test, emodb_test)
    cli = [sys.executable, "-m", "abhinaya.cli"]
    results: dict = {"ravdess_test": ravdess_test, "emodb_test": emodb_test, "models": {}}
    for model in args.models.split(","):
        run_dir = out / model
        log = out / f"{model}.log"
        if not (run_dir / "summary.json").is_file():
            resume = ["--resume"] if (run_dir / "config.yaml").is_file() else []
            overrides = [x for o in train_overrides(model, data, ravdess_test, emodb_test) for x in ("--set", o)]
            run([*cli, "train", RECIPES[model], *overrides, "--set", "train.progress=false", "-o", str(run_dir),
                 *resume], log)
        summary = json.loads((run_dir / "summary.json").read_text())
        entry = {"train_seconds": summary.get("seconds_this_session"), "epochs": summary.get("epochs_run"),
                 "train_utterances": summary.get("train_utterances")}
        for corpus, manifest in manifests.items():
            for norm in ("--speaker-norm", "--no-speaker-norm"):
                predictions = out / f"{model}_on_{corpus}{norm.replace('--', '_')}.csv"
                if not predictions.is_file():
                    run([*cli, "predict", str(run_dir), str(manifest), "-o", str(predictions), norm,
                         "--no-progress"], log)
                entry[f"{corpus}{norm.replace('--', '_').replace('-', '_')}"] = score(predictions, manifest)
        results["models"][model] = entry
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
