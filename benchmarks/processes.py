"""`abhinaya predict` on a 2,000-file folder: one process against two (torchrun), same machine, same run.

    python benchmarks/processes.py --run RUN_DIR --data ../shared/data [--files 2000] [--block-size 256]
                                   [--baseline-src OLD_CHECKOUT/src]

The folder is made on the fly in a temporary folder (symbolic links, never kept): the RAVDESS and EmoDB files of
``--data`` in turn, each link named ``NNNN_<file>`` so that a file taken twice gets a new id. Then, each timed from
the command's start to its end (model loading included):

- ``one``: ``abhinaya predict RUN_DIR FOLDER -o one.csv`` (torch's default threads: one per core);
- ``two``: ``python -m torch.distributed.run --standalone --nproc-per-node 2 -m abhinaya.cli predict ...``
  (``OMP_NUM_THREADS=1``, so two processes share the cores as one process's two threads do).

- ``baseline`` (with ``--baseline-src``): the one-process command with another checkout's package first on the
  path, e.g. the commit before prediction went block by block (every input decoded and held before the first batch).

Reports seconds, peak resident memory of the (first) process, files per second, the ratios, and how far the tables
are apart (classes that differ, largest difference of a probability).
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


# Runs the command line in this process and prints its peak resident memory at exit (kB on Linux).
PEAK = ("import atexit, resource, runpy, sys; atexit.register(lambda: print('PEAK_RSS_KB', "
        "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)); sys.argv = sys.argv[1:]; "
        "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)")


def timed(command: list[str], env: dict) -> tuple[float, float | None]:
    """Seconds and peak RSS (MB; of the first process that reports it)."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    peaks = [int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("PEAK_RSS_KB")]
    return seconds, (round(max(peaks) / 1024) if peaks else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="member run folder (S1)")
    parser.add_argument("--data", default="../shared/data", help="folder holding ravdess/ and emodb/")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--baseline-src", help="another checkout's src folder, run as one process for comparison")
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
        cli = [sys.executable, "-c", PEAK, "abhinaya.cli", "predict", *common]
        one, one_peak = timed([*cli, "-o", str(tmp / "one.csv")], env)
        two, two_peak = timed([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                               "--no-python", *cli, "-o", str(tmp / "two.csv")], {**env, "OMP_NUM_THREADS": "1"})
        a, b = read_predictions(tmp / "one.csv"), read_predictions(tmp / "two.csv")
        assert a.ids == b.ids, "the two tables hold other rows or another order"
        result = {
            "files": args.files,
            "distinct_files": distinct,
            "cores": os.cpu_count(),
            "one_process_s": round(one, 1),
            "one_process_peak_rss_mb": one_peak,
            "two_processes_s": round(two, 1),
            "two_processes_peak_rss_mb_each": two_peak,
            "files_per_s_one": round(args.files / one, 2),
            "files_per_s_two": round(args.files / two, 2),
            "speedup_two_over_one": round(one / two, 3),
            "classes_differing": sum(x != y for x, y in zip(a.labels, b.labels)),
            "max_prob_difference": float(abs(a.probs - b.probs).max()),
        }
        if args.baseline_src:
            base_common = [c for c in common if c not in ("--block-size", str(args.block_size))]
            base_env = {**env, "PYTHONPATH": str(Path(args.baseline_src).resolve())}
            base, base_peak = timed([sys.executable, "-c", PEAK, "abhinaya.cli", "predict", *base_common, "-o",
                                     str(tmp / "base.csv")], base_env)
            c = read_predictions(tmp / "base.csv")
            result.update({
                "baseline_s": round(base, 1),
                "baseline_peak_rss_mb": base_peak,
                "speed_one_over_baseline": round(base / one, 3),
                "baseline_rows_equal": c.ids == a.ids,
                "baseline_classes_differing": sum(x != y for x, y in zip(a.labels, c.labels)) if c.ids == a.ids else None,
                "baseline_max_prob_difference": float(abs(a.probs - c.probs).max()) if c.ids == a.ids else None,
            })
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
