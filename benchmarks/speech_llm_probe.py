"""Where does an untrained speech LLM keep the emotion information? Linear probes at each stage, RAVDESS fold 1.

    python benchmarks/speech_llm_probe.py --data ../shared/data/ravdess --llm-layers 4,12 \
        --set model.qformer.initializer_range=0.02

Builds the model of a recipe (default ``recipes/ravdess/s2.yaml``, with ``--set`` overrides) with the pretrained
Whisper and LLM and a freshly initialised connector, runs it in inference mode over the training actors of
cross-validation fold 1 and its 4 test actors, and fits a class-balanced logistic regression (``C=0.1``) on the
mean+std over time of:

- ``whisper``: the frozen encoder output the connector reads (``model.whisper_layer``);
- ``qformer``: the Q-Former's window outputs; ``proj``: the speech tokens in the LLM's embedding space;
- ``llmN``: the LLM's hidden states after N decoder layers, over the speech tokens (what the head pools).

Macro-F1 on the test actors, never trained on. A stage that loses what the stage before it holds, before any
training, shows where a recipe's initialisation throws information away. With ``--train-mode`` the features are
taken with the model in training mode (dropout on), which shows how much dropout moves them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="RAVDESS folder")
    parser.add_argument("--recipe", default="recipes/ravdess/s2.yaml")
    parser.add_argument("--llm-layers", default="4,12", help="comma-separated numbers of decoder layers")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-mode", action="store_true", help="features with dropout on")
    parser.add_argument("--set", action="append", default=[], help="recipe override")
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        parser.error(f"--data {args.data}: not a folder (the RAVDESS corpus folder, Actor_01 ... Actor_20)")

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import StandardScaler
    from tqdm import tqdm

    from abhinaya.corpora import prepare_corpus
    from abhinaya.corpora.splits import sorted_speakers, speaker_folds
    from abhinaya.labels import CORPUS_LABEL_SETS
    from abhinaya.members import get_member
    from abhinaya.runs import load_recipe

    torch.manual_seed(0)
    layers = [int(x) for x in args.llm_layers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        utterances = prepare_corpus("ravdess", args.data, f"{tmp}/m.jsonl", check="header").utterances
    folds = speaker_folds(sorted_speakers(utterances), 5)
    test_speakers, dev_speakers = set(folds[0]), set(folds[1][-2:])
    train = [u for u in utterances if u.speaker not in test_speakers | dev_speakers]
    test = [u for u in utterances if u.speaker in test_speakers]

    recipe = load_recipe(args.recipe, ["model.feature_cache=auto", *args.set])
    member = get_member(recipe.member)(recipe)
    labels = CORPUS_LABEL_SETS["ravdess"]
    model = member.build(labels, pretrained=True)[0]
    model.train(args.train_mode)
    if max(layers) > len(model.llm.model.layers):
        parser.error(f"the model runs {len(model.llm.model.layers)} LLM layers; --llm-layers asks for {max(layers)}")

    def mean_std(x: torch.Tensor) -> np.ndarray:
        return torch.cat([x.mean(0), x.std(0)]).float().numpy()

    def features(utts) -> tuple[dict[str, np.ndarray], np.ndarray]:
        data = member.dataset(utts, labels, train=False)
        out: dict[str, list] = {k: [] for k in ["whisper", "qformer", "proj", *(f"llm{n}" for n in layers)]}
        ys = []
        with torch.inference_mode():
            for start in tqdm(range(0, len(utts), args.batch_size), desc="features", leave=False):
                batch = member.collate([data[j] for j in range(start, min(start + args.batch_size, len(utts)))])
                ys += batch["labels"].tolist()
                frames, queries, query_mask = model.window_queries(batch["waveforms"], batch["lengths"])
                width = model.ln_speech.normalized_shape[0]
                speech = model.proj(queries)
                embeds, attention, content = model.assemble(
                    speech, query_mask, batch["prefix_ids"], batch["prefix_lengths"],
                    batch["suffix_ids"], batch["suffix_lengths"], batch["suffix_content"],
                )
                hidden = model.llm.model(inputs_embeds=embeds, attention_mask=attention, output_hidden_states=True)
                for b in range(len(frames)):
                    out["whisper"].append(mean_std(frames[b][:, :width]))
                    out["qformer"].append(mean_std(queries[b, query_mask[b]]))
                    out["proj"].append(mean_std(speech[b, query_mask[b]]))
                    for n in layers:
                        out[f"llm{n}"].append(mean_std(hidden.hidden_states[n][b, content[b]]))
        return {k: np.stack(v) for k, v in out.items()}, np.array(ys)

    started = time.perf_counter()
    train_x, train_y = features(train)
    test_x, test_y = features(test)
    print(f"fold 1: {len(train)} training utterances (actors {', '.join(sorted({u.speaker for u in train}))}), "
          f"{len(test)} test (actors {', '.join(sorted(test_speakers))}); features in {time.perf_counter() - started:.0f} s")
    print(f"overrides: {' '.join(args.set) or '(none)'}; {'training' if args.train_mode else 'inference'} mode")
    print("| stage | dimensions | test macro-F1 |\n|---|---|---|")
    for stage in train_x:
        scaler = StandardScaler().fit(train_x[stage])
        probe = LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced")
        probe.fit(scaler.transform(train_x[stage]), train_y)
        score = f1_score(test_y, probe.predict(scaler.transform(test_x[stage])), average="macro")
        print(f"| {stage} | {train_x[stage].shape[1]} | {score:.3f} |", flush=True)


if __name__ == "__main__":
    main()
