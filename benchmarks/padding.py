"""Padding added by batching: random batches against length-bucketed ones.

    python benchmarks/padding.py --data ../shared/data/ravdess

Prints padded samples / real samples for whole utterances of the corpus, mean
over 20 epochs (shuffled) or permutations (random), per batch size.
"""

from __future__ import annotations

import argparse

import numpy as np

from abhinaya.corpora import prepare_ravdess
from abhinaya.data.audio import LengthBucketSampler, batch_padding_ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="RAVDESS folder")
    parser.add_argument("--batch-sizes", default="8,16")
    args = parser.parse_args()
    lengths = [round(u.duration * 16000) for u in prepare_ravdess(args.data, check="header").utterances]
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        rng = np.random.default_rng(0)
        random = []
        for _ in range(20):
            order = rng.permutation(len(lengths))
            random.append(batch_padding_ratio(lengths, [order[i : i + batch] for i in range(0, len(order), batch)]))
        sampler = LengthBucketSampler(lengths, batch, shuffle=True, seed=0)
        bucketed = []
        for epoch in range(20):
            sampler.set_epoch(epoch)
            bucketed.append(batch_padding_ratio(lengths, list(sampler)))
        ordered = batch_padding_ratio(lengths, list(LengthBucketSampler(lengths, batch, shuffle=False)))
        print(f"batch {batch}: random {np.mean(random):.3f}, bucketed {np.mean(bucketed):.4f}, sorted {ordered:.4f}")


if __name__ == "__main__":
    main()
