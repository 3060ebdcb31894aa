"""What ``abhinaya predict --classes`` changes: each model of the multi-corpus benchmark scored on each corpus's
classes with its plain decision (any of the model's classes; one the corpus lacks counts as an error) and with the
decision restricted to the corpus's classes (``predictions.restrict_classes``, what ``--classes`` does).

    python benchmarks/restrict_classes.py runs/multi [--models ravdess,emodb,union]

Reads the tables ``benchmarks/multi_corpus.py`` wrote (``OUT/predictions/<model>_<split>_<corpus>_speaker_norm.csv``)
and its manifests; predicts nothing. Utterances of a class the model lacks (EmoDB's boredom for a RAVDESS model) are
left out, as in that benchmark. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sklearn.metrics import f1_score

from abhinaya.manifest import read_manifest
from abhinaya.predictions import read_predictions, restrict_classes


def scores(table_path: Path, manifest: Path) -> dict:
    table = read_predictions(table_path)
    reference = {u.id: u.label for u in read_manifest(manifest)}
    ids = [i for i in table.ids if reference[i] in table.label_set.labels]
    table = table.reorder(ids)
    truth = [reference[i] for i in ids]
    classes = [c for c in table.label_set if c in set(truth)]
    restricted = restrict_classes(table, classes)

    def macro(predicted):
        return round(float(f1_score(truth, predicted, labels=classes, average="macro", zero_division=0)), 4)

    outside = sum(1 for label in table.labels if label not in classes)
    return {"classes": len(classes), "utterances": len(ids), "plain": macro(table.labels),
            "restricted": macro(restricted.labels), "plain_outside_corpus": outside}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="the --out folder of benchmarks/multi_corpus.py")
    parser.add_argument("--models", default="ravdess,emodb,union")
    args = parser.parse_args()
    out = Path(args.out)
    results: dict = {}
    for model in args.models.split(","):
        for split in ("dev", "test"):
            for corpus in ("ravdess", "emodb"):
                table = out / "predictions" / f"{model}_{split}_{corpus}_speaker_norm.csv"
                if table.is_file():
                    results.setdefault(model, {})[f"{split}_{corpus}"] = scores(table, out / f"{split}_{corpus}.jsonl")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
