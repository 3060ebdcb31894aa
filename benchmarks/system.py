"""Tables of a finished system run (``abhinaya run``) for BENCHMARKS.md: every member and every ensemble method on the
test speakers and (cross-fitted) on dev, and the seconds of each stage.

    abhinaya run recipes/ravdess/abhinaya.yaml --set data.root=../shared/data/ravdess \
        --set 'data.dev_speakers=["15","16"]' --set 'data.test_speakers=["17","18","19","20"]' -o runs/system-fold5
    python benchmarks/system.py runs/system-fold5

The test speakers took part in no choice: members select nothing on dev in the RAVDESS recipes (last epoch kept),
and the ensembles are fitted and chosen on the dev speakers' predictions only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def score_table(metrics: dict, split: str, members: list[str], chosen: str) -> str:
    rows = ["| system | kind | macro-F1 | UA | WA |", "|---|---|---|---|---|"]
    for name, report in sorted(metrics[split].items(), key=lambda item: -item[1]["macro_f1"]):
        kind = "member" if name in members else ("ensemble, chosen on dev" if name == chosen else "ensemble")
        rows.append(f"| {name} | {kind} | {report['macro_f1']:.3f} | {report['ua']:.3f} | {report['wa']:.3f} |")
    return "\n".join(rows)


def stage_table(stages: dict) -> str:
    rows = ["| stage | seconds |", "|---|---|"]
    total = 0.0
    for name, record in stages.items():
        rows.append(f"| {name} | {record['seconds']:.0f} |")
        total += record["seconds"]
    rows.append(f"| all stages | {total:.0f} ({total / 60:.1f} min) |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    metrics = json.loads((args.run_dir / "metrics.json").read_text())
    record = json.loads((args.run_dir / "ensemble.json").read_text())
    stages = json.loads((args.run_dir / "stages.json").read_text())["stages"]
    members = record["members"]
    print(f"chosen: {record['chosen']} ({record['reason']})\n")
    for split in ("test", "dev"):
        if split in metrics:
            note = " (ensembles cross-fitted)" if split == "dev" else ""
            print(f"{split}{note}:\n\n{score_table(metrics, split, members, record['chosen'])}\n")
    print(stage_table(stages))


if __name__ == "__main__":
    main()
