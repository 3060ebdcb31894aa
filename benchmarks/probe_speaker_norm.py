"""Controls for per-speaker normalisation: the frozen Whisper-base probe with the same normalisation, and one group
per test fold instead of one per speaker.

    python benchmarks/probe_speaker_norm.py --corpus ravdess --data ../shared/data/ravdess --out runs/cv-probe-sn

Folds, dev speakers, features and the probe are those of ``benchmarks/cv.py`` (``frozen``): mean+std pooling of one
frozen Whisper-base layer, chosen on the fold's dev speakers, then a class-balanced logistic regression trained on the
training and dev speakers. The test speakers' feature vectors are then scored

- ``off``: as they are (cv.py's figure);
- ``speaker``: each test speaker's vectors moved to the training mean (``predict/speaker_norm.py``, prior 10), as
  ``predict.speaker_norm`` does for S1, S2 and ST1;
- ``fold``: all test vectors of the fold moved together (one group), which removes what the fold as a whole shares
  (the recording set-up) but nothing that tells speakers apart;
- ``speaker, train too``: the training vectors also normalised per training speaker before the fit.

The layer and the regression are the same for every row; no test label is used by any of them. Writes
``OUT/probe_speaker_norm.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cv import folds_for, frozen_features  # noqa: E402

PRIOR = 10.0


def shift(x: np.ndarray, groups: list[str], reference: np.ndarray) -> np.ndarray:
    import torch

    from abhinaya.predict.speaker_norm import speaker_shift

    return speaker_shift(torch.from_numpy(x).double(), groups, torch.from_numpy(reference).double(), PRIOR).numpy()


def score_fold(utterances, plan, features, labels) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from abhinaya.evaluation.metrics import classification_report

    def subset(speakers):
        chosen = [u for u in utterances if u.speaker in speakers]
        return np.stack([features[u.id] for u in chosen]), [u.label for u in chosen], [u.speaker for u in chosen]

    def fit(x, y):
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000, class_weight="balanced")).fit(x, y)

    held = set(plan["test"]) | set(plan["dev"])
    x_train, y_train, s_train = subset({u.speaker for u in utterances} - held)
    x_dev, y_dev, s_dev = subset(set(plan["dev"]))
    x_test, y_test, s_test = subset(set(plan["test"]))
    dev_scores = [
        classification_report(y_dev, list(fit(x_train[:, k], y_train).predict(x_dev[:, k])), labels)["macro_f1"]
        for k in range(x_train.shape[1])
    ]
    layer = int(np.argmax(dev_scores))
    x_fit = np.concatenate([x_train[:, layer], x_dev[:, layer]]).astype(np.float64)
    y_fit, s_fit = y_train + y_dev, s_train + s_dev
    reference = x_fit.mean(axis=0)
    model = fit(x_fit, y_fit)
    x = x_test[:, layer].astype(np.float64)
    rows = {
        "off": x,
        "speaker": shift(x, s_test, reference),
        "fold": shift(x, ["fold"] * len(x), reference),
    }
    out = {"layer": layer}
    for name, values in rows.items():
        report = classification_report(y_test, list(model.predict(values)), labels)
        out[name] = {k: report[k] for k in ("macro_f1", "ua", "wa")}
    normalised_fit = fit(shift(x_fit, s_fit, reference), y_fit)
    report = classification_report(y_test, list(normalised_fit.predict(rows["speaker"])), labels)
    out["speaker, train too"] = {k: report[k] for k in ("macro_f1", "ua", "wa")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=["ravdess", "emodb"], required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from abhinaya.labels import CORPUS_LABEL_SETS

    labels = list(CORPUS_LABEL_SETS[args.corpus])
    utterances, plans = folds_for(args.corpus, Path(args.data), args.folds)
    features = frozen_features(utterances, out / "frozen_features.npz")
    results = {f"fold{p['fold']}": {"test": p["test"], **score_fold(utterances, p, features, labels)} for p in plans}
    (out / "probe_speaker_norm.json").write_text(json.dumps(results, indent=2) + "\n")
    variants = ("off", "speaker", "fold", "speaker, train too")
    print("| probe scored | " + " | ".join(results) + " | mean macro-F1 / UA / WA |")
    print("|---|" + "---|" * (len(results) + 1))
    for v in variants:
        cells = [f"{r[v]['macro_f1']:.3f}" for r in results.values()]
        mean = {k: np.mean([r[v][k] for r in results.values()]) for k in ("macro_f1", "ua", "wa")}
        print(f"| {v} | " + " | ".join(cells) + f" | {mean['macro_f1']:.3f} / {mean['ua']:.3f} / {mean['wa']:.3f} |")
    print("layers chosen on dev: " + ", ".join(f"{k} {r['layer']}" for k, r in results.items()))


if __name__ == "__main__":
    main()
