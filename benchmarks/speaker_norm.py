"""Per-speaker normalisation at prediction time (``predict.speaker_norm``), scored on trained cross-validation runs.

    python benchmarks/speaker_norm.py runs/cv-ravdess --member s1

Takes the fold run folders ``RUNS/<member>-fold<k>`` that ``benchmarks/cv.py`` wrote, and predicts each fold's
test speakers (never trained on) again from the run folder alone, with the pooled vectors computed once:

- ``off``: the head on the pooled vectors as they are (what the runs were scored with);
- ``prior P``: each test speaker's vectors moved to the run's reference mean (the mean pooled vector of its clean
  training utterances, ``reference_mean.safetensors``; runs trained before it was saved fall back to the head's
  running mean, said once per fold), the speaker mean shrunk by a pseudo-count of P utterances (the shipped
  default is 10);
- ``few emotions``: the same, but every test speaker keeps the utterances of only K of the classes (drawn at
  random per speaker, seeded), so that the assumption behind the normalisation (each speaker shows several
  emotions) is strained; ``off`` and the normalisation are scored on the same subset;
- ``N per speaker``: every test speaker keeps N of its utterances (drawn at random, seeded), so the speaker mean
  comes from fewer utterances, as with a new speaker of whom little has been heard; scored as above.

``--group fold`` is a control: all test utterances of a fold form one group instead of one group per speaker, so
the shift is the same for every utterance of the fold (what is gained from the fold's overall offset alone, without
any speaker identity).

Training is untouched: the weights are the runs' own. Per-fold and mean macro-F1, UA and WA go to
``RUNS/speaker_norm.json`` and are printed as a Markdown table; ``RUNS/speaker_norm.png`` shows them per fold. ``--write-tables`` also writes each fold's test
predictions with the first prior to ``<fold>/test_predictions.speaker_norm.csv`` (next to cv.py's
``test_predictions.csv``), for ``abhinaya ensemble`` and ``abhinaya evaluate``. With ``--group fold`` these are
``RUNS/speaker_norm.fold_groups.json`` / ``.png`` and ``<fold>/test_predictions.fold_norm.csv``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def score(labels, truth, probs) -> dict:
    from abhinaya.evaluation.metrics import classification_report

    report = classification_report(truth, [labels[i] for i in probs.argmax(1)], labels)
    return {k: round(report[k], 4) for k in ("macro_f1", "ua", "wa")}


def fold_scores(
    run_dir: Path, priors: list[float], few: list[int], batch_size: int, seed: int, write_tables: bool = False,
    sizes: list[int] = (), group: str = "speaker",
) -> dict:
    from abhinaya.manifest import read_manifest
    from abhinaya.predict.engine import classify_pooled, predict_pooled
    from abhinaya.recipes import PredictConfig
    from abhinaya.runs import load_run

    run = load_run(run_dir)
    labels = list(run.label_set)
    test = [u for u in read_manifest(run_dir / "data" / "splits.jsonl") if u.split == "test" and u.label in labels]
    dataset = run.member.dataset(test, None, train=False)
    _, pooled = predict_pooled(run.member, run.model, dataset, batch_size, progress=False)
    speakers = [u.speaker for u in dataset.utterances]
    # the groups normalised together: each speaker, or (control) the whole fold
    groups = speakers if group == "speaker" else [run_dir.name] * len(speakers)
    truth = [u.label for u in dataset.utterances]
    reference = run.reference_mean
    if reference is None:
        print(f"note: {run_dir} has no reference mean (trained before it was saved); using the head's running mean")
        reference = run.member.pooled_mean(run.model)

    def scored(rows, config):
        probs = classify_pooled(run.member, run.model, pooled[rows], [groups[i] for i in rows], config, reference)
        return score(labels, [truth[i] for i in rows], probs)

    everything = np.arange(len(truth))
    result = {
        "utterances": len(truth), "speakers": len(set(speakers)), "group": group,
        "off": scored(everything, PredictConfig()),
    }
    for prior in priors:
        result[f"prior {prior:g}"] = scored(everything, PredictConfig(speaker_norm=True, speaker_norm_prior=prior))
    if write_tables:
        from abhinaya.predictions import table_from_probs, write_predictions

        config = PredictConfig(speaker_norm=True, speaker_norm_prior=priors[0])
        probs = classify_pooled(run.member, run.model, pooled, groups, config, reference)
        ids = [u.id for u in dataset.utterances]
        table = table_from_probs(ids, probs, run.label_set, source=str(run_dir))
        suffix = "speaker_norm" if group == "speaker" else "fold_norm"
        write_predictions(run_dir / f"test_predictions.{suffix}.csv", table)
    rng = np.random.default_rng(seed)
    for k in few:
        rows = []
        for speaker in sorted(set(speakers)):
            kept = set(rng.choice(labels, size=min(k, len(labels)), replace=False))
            rows += [i for i in everything if speakers[i] == speaker and truth[i] in kept]
        rows = np.array(rows)
        result[f"{k} emotions, off"] = scored(rows, PredictConfig())
        result[f"{k} emotions, prior {priors[0]:g}"] = scored(
            rows, PredictConfig(speaker_norm=True, speaker_norm_prior=priors[0])
        )
    for n in sizes:
        rows = []
        for speaker in sorted(set(speakers)):
            own = [i for i in everything if speakers[i] == speaker]
            rows += sorted(rng.choice(own, size=min(n, len(own)), replace=False).tolist())
        rows = np.array(rows)
        result[f"{n} per speaker, off"] = scored(rows, PredictConfig())
        result[f"{n} per speaker, prior {priors[0]:g}"] = scored(
            rows, PredictConfig(speaker_norm=True, speaker_norm_prior=priors[0])
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", help="folder of benchmarks/cv.py holding <member>-fold<k> run folders")
    parser.add_argument("--member", default="s1")
    parser.add_argument("--priors", default="10,0", help="comma-separated pseudo-counts; the first is also used "
                        "for the few-emotions check")
    parser.add_argument("--few", default="2,4", help="comma-separated numbers of emotions each speaker keeps")
    parser.add_argument("--sizes", default="", help="comma-separated numbers of utterances each speaker keeps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-tables", action="store_true", help="write each fold's normalised test predictions")
    parser.add_argument("--group", default="speaker", choices=["speaker", "fold"],
                        help="normalise per test speaker, or (control) all test utterances of a fold as one group")
    args = parser.parse_args()

    runs = Path(args.runs)
    folds = [f for f in runs.glob(f"{args.member}-fold*") if f.name.rsplit("fold", 1)[1].isdigit()]
    folds = sorted((f for f in folds if (f / "model.safetensors").is_file()), key=lambda f: int(f.name.rsplit("fold", 1)[1]))
    if not folds:
        parser.error(f"{runs}: no finished {args.member}-fold<k> run folders")
    priors = [float(p) for p in args.priors.split(",")]
    few = [int(k) for k in args.few.split(",") if k]
    results = {}
    for fold in folds:
        results[fold.name] = fold_scores(
            fold, priors, few, args.batch_size, args.seed, args.write_tables,
            [int(n) for n in args.sizes.split(",") if n], args.group,
        )
        print(fold.name, json.dumps({k: v["macro_f1"] for k, v in results[fold.name].items() if isinstance(v, dict)}),
              flush=True)
    settings = [k for k, v in next(iter(results.values())).items() if isinstance(v, dict)]
    mean = {s: {m: round(float(np.mean([r[s][m] for r in results.values()])), 4) for m in ("macro_f1", "ua", "wa")}
            for s in settings}
    name = "speaker_norm" if args.group == "speaker" else "speaker_norm.fold_groups"
    (runs / f"{name}.json").write_text(json.dumps({"group": args.group, "folds": results, "mean": mean}, indent=2) + "\n")
    from abhinaya.evaluation.plots import plot_fold_scores

    shown = {s: [results[f.name][s]["macro_f1"] for f in folds] for s in settings if s == "off" or s.startswith("prior")}
    plot_fold_scores(shown, [f.name.rsplit("-", 1)[1] for f in folds], runs / f"{name}.png",
                     title=f"{args.member}: per-{args.group} normalisation on unseen speakers")

    print("\n| setting | " + " | ".join(f.name for f in folds) + " | mean macro-F1 | mean UA | mean WA |")
    print("|---|" + "---|" * (len(folds) + 3))
    for s in settings:
        cells = " | ".join(f"{results[f.name][s]['macro_f1']:.3f}" for f in folds)
        print(f"| {s} | {cells} | {mean[s]['macro_f1']:.3f} | {mean[s]['ua']:.3f} | {mean[s]['wa']:.3f} |")


if __name__ == "__main__":
    main()
