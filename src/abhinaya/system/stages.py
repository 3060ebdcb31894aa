"""Stage bookkeeping of a system run: which stage ran with which inputs, what it wrote, how long it took.

Each stage has a key: a hash of its settings and of the keys of the stages it reads. A stage whose recorded key
equals its key and whose outputs all exist is reused; any other stage runs again. Keys chain, so changing one
member's recipe changes that member's training key and, through it, its predictions, the ensemble and the report,
and nothing else. ``stages.json`` is rewritten atomically after every stage, so an interrupted run resumes with
the stage it was in.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

STAGES_FILE = "stages.json"


def stage_key(*parts: Any) -> str:
    """A short hash of JSON-able ``parts`` (dict keys sorted)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """What changes when a file is replaced: its path, size and modification time."""
    stat = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def folder_fingerprint(folder: str | Path, pattern: str = "*") -> str:
    """A hash of the names, sizes and modification times of the files under ``folder`` (recursively)."""
    folder = Path(folder)
    entries = []
    for path in sorted(folder.rglob(pattern)):
        if path.is_file():
            stat = path.stat()
            entries.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return stage_key(entries)


@dataclass
class StageRecord:
    key: str
    outputs: list[str]
    seconds: float
    finished: str  # ISO time

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "outputs": self.outputs, "seconds": round(self.seconds, 2), "finished": self.finished}


@dataclass
class StageBook:
    """The ``stages.json`` of a run folder."""

    run_dir: Path
    records: dict[str, StageRecord] = field(default_factory=dict)

    @classmethod
    def open(cls, run_dir: str | Path) -> "StageBook":
        run_dir = Path(run_dir)
        book = cls(run_dir)
        path = run_dir / STAGES_FILE
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                for name, record in data.get("stages", {}).items():
                    book.records[name] = StageRecord(
                        record["key"], list(record["outputs"]), float(record["seconds"]), record["finished"]
                    )
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path}: unreadable stage record ({err}); remove it to run every stage again") from None
        return book

    def is_fresh(self, name: str, key: str) -> bool:
        """Whether stage ``name`` ran with ``key`` and its outputs are all still there."""
        record = self.records.get(name)
        return (
            record is not None
            and record.key == key
            and all((self.run_dir / output).exists() for output in record.outputs)
        )

    def seconds(self, name: str) -> float | None:
        record = self.records.get(name)
        return record.seconds if record is not None else None

    def record(self, name: str, key: str, outputs: Iterable[str | Path], seconds: float) -> None:
        relative = [os.path.relpath(Path(o), self.run_dir) if Path(o).is_absolute() else str(o) for o in outputs]
        self.records[name] = StageRecord(key, relative, seconds, time.strftime("%Y-%m-%dT%H:%M:%S"))
        self.save()

    def save(self) -> Path:
        path = self.run_dir / STAGES_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        data = {"stages": {name: record.to_dict() for name, record in self.records.items()}}
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path
