"""`abhinaya predict` on a 2,000-file folder: one process against two (torchrun), same machine, same run.

    python benchmarks/processes.py --run RUN_DIR --data ../shared/data [--files 2000] [--block-size 256]

The folder is made on the fly in a temporary folder (symbolic links, never kept): the RAVDESS and EmoDB files of
``--data`` in turn, each link named ``NNNN_<file>`` so that a file taken twice gets a new id. Then, each timed from
the command's start to its end (model loading included):

- ``one``: ``abhinaya predict RUN_DIR FOLDER -o one.csv`` (torch's default threads: one per core);
- ``two``: ``python -m torch.distributed.run --standalone --nproc-per-node 2 -m abhinaya.cli predict ...``
  (``OMP_NUM_THREADS=1``, so two processes share the cores as one process's two threads do).

Reports seconds, files per second, the ratio, and how far the two tables are apart (classes that differ, largest
difference of a probability).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_folder(data: Path, count: int, folder: Path) -> int:
    sources = sorted((data / "ravdess").rglob("*.flac")) + sorted((data / "emodb").rglob("*.wav"))
    if not sources:
        raise SystemExit(f"{data}: no RAVDESS (.flac) or EmoDB (.wav) files")
    for k in range(count):
        source = sources[k % len(sources)]
        (folder / f"{k:04d}_{source.name}").symlink_to(source.resolve())
    return len(sources)


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="member run folder (S1)")
    parser.add_argument("--data", default="../shared/data", help="folder holding ravdess/ and emodb/")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--block-size", type=int, default=256)
    args = parser.parse_args()

    from abhinaya.predictions import read_predictions

    with tempfile.TemporaryDirectory(prefix="abhinaya-processes-") as tmp:
        tmp = Path(tmp)
        folder = tmp / "inputs"
        folder.mkdir()
        distinct = make_folder(Path(args.data), args.files, folder)
        common = [str(Path(args.run)), str(folder), "--block-size", str(args.block_size), "--no-progress",
                  "--device", "cpu"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        one = timed([sys.executable, "-m", "abhinaya.cli", "predict", *common, "-o", str(tmp / "one.csv")], env)
        two = timed([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
                     "abhinaya.cli", "predict", *common, "-o", str(tmp / "two.csv")], {**env, "OMP_NUM_THREADS": "1"})
        a, b = read_predictions(tmp / "one.csv"), read_predictions(tmp / "two.csv")
        assert a.ids == b.ids, "the two tables hold other rows or another order"
        result = {
            "files": args.files,
            "distinct_files": distinct,
            "cores": os.cpu_count(),
            "one_process_s": round(one, 1),
            "two_processes_s": round(two, 1),
            "files_per_s_one": round(args.files / one, 2),
            "files_per_s_two": round(args.files / two, 2),
            "speedup_two_over_one": round(one / two, 3),
            "classes_differing": sum(x != y for x, y in zip(a.labels, b.labels)),
            "max_prob_difference": float(abs(a.probs - b.probs).max()),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
