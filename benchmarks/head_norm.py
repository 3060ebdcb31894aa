"""Does an MLP head need its input standardised? A probe on frozen Whisper-base features.

    python benchmarks/head_norm.py --corpus ravdess --data ../shared/data/ravdess --out runs/head-norm

Per speaker-independent fold (the folds of ``cv.py``; the dev speakers are left out, so each fold trains on the
same speakers as an S1 fold), the mean+std pooled hidden state of one frozen Whisper-base layer is classified three
ways, all scored on the fold's test speakers:

- logistic regression on standardised features (the ``frozen`` baseline of ``cv.py``, C 0.1, balanced);
- S1's MLP head (Linear-ReLU-Dropout-Linear, AdamW, class-weighted cross-entropy, S1's head learning rate and batch
  size) on the raw pooled vector;
- the same head behind a per-dimension standardisation with the training speakers' statistics (what
  ``head_norm: running`` gives S1 once its running statistics settle).

The features are cached in ``OUT/frozen_features.npz`` (the same file as ``cv.py``'s).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cv import folds_for, frozen_features  # noqa: E402


def train_head(x_train, y_train, x_test, num_labels, standardise, epochs, lr, seed=0):
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(seed)
    x_train = torch.as_tensor(x_train, dtype=torch.float32)
    x_test = torch.as_tensor(x_test, dtype=torch.float32)
    if standardise:
        mean, std = x_train.mean(0), x_train.std(0) + 1e-5
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    head = nn.Sequential(nn.Linear(x_train.shape[1], 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, num_labels))
    y = torch.as_tensor(y_train)
    counts = torch.bincount(y, minlength=num_labels).float()
    weight = len(y) / (num_labels * counts)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    for _ in range(epochs):
        head.train()
        order = torch.randperm(len(y))
        for start in range(0, len(y), 8):
            rows = order[start : start + 8]
            loss = F.cross_entropy(head(x_train[rows]), y[rows], weight=weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    head.eval()
    with torch.no_grad():
        return head(x_test).argmax(1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=["ravdess", "emodb"], required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--layer", type=int, default=3, help="hidden state probed (0 = embedding output)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from abhinaya.evaluation.metrics import classification_report
    from abhinaya.labels import CORPUS_LABEL_SETS

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    labels = list(CORPUS_LABEL_SETS[args.corpus])
    index = {label: i for i, label in enumerate(labels)}
    from abhinaya.corpora.common import PrepareError

    try:
        utterances, plans = folds_for(args.corpus, Path(args.data), args.folds)
    except (PrepareError, ValueError) as err:
        parser.error(str(err))
    features = frozen_features(utterances, out / "frozen_features.npz")

    def subset(speakers):
        chosen = [u for u in utterances if u.speaker in speakers]
        return np.stack([features[u.id][args.layer] for u in chosen]), np.array([index[u.label] for u in chosen])

    def macro_f1(y, predicted):
        return classification_report([labels[i] for i in y], [labels[i] for i in predicted], labels)["macro_f1"]

    rows = []
    for plan in plans:
        train_speakers = {u.speaker for u in utterances} - set(plan["test"]) - set(plan["dev"])
        x_train, y_train = subset(train_speakers)
        x_test, y_test = subset(set(plan["test"]))
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000, class_weight="balanced"))
        row = {
            "fold": plan["fold"],
            "logreg": macro_f1(y_test, probe.fit(x_train, y_train).predict(x_test)),
            "mlp_raw": macro_f1(
                y_test, train_head(x_train, y_train, x_test, len(labels), False, args.epochs, args.lr)
            ),
            "mlp_standardised": macro_f1(
                y_test, train_head(x_train, y_train, x_test, len(labels), True, args.epochs, args.lr)
            ),
        }
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    (out / "head_norm.json").write_text(json.dumps({"args": vars(args), "folds": rows}, indent=2) + "\n")
    print("\n| fold | logistic regression | MLP head, raw | MLP head, standardised |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['fold']} | {row['logreg']:.3f} | {row['mlp_raw']:.3f} | {row['mlp_standardised']:.3f} |")
    means = {k: float(np.mean([r[k] for r in rows])) for k in ("logreg", "mlp_raw", "mlp_standardised")}
    print(f"| mean | {means['logreg']:.3f} | {means['mlp_raw']:.3f} | {means['mlp_standardised']:.3f} |")


if __name__ == "__main__":
    main()
