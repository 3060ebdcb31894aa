"""Prediction over inputs of any number: in blocks, written as it goes, resumable, in several processes.

``abhinaya predict`` never holds more than one block of decoded audio. The inputs (manifest rows, audio files,
folders; metadata only) are gathered and numbered in input order, then predicted a block at a time
(``block_size`` inputs, default 256). Each finished block is appended to a part file next to the output as one
JSON line (its input numbers, its rows, its recordings), flushed to disk. When every block is done the part files
are merged into the output in input order, written atomically, and removed.

Resuming. Rerun the same command after an interruption: blocks whose line is complete in a part file are
skipped (a line cut by the interruption is redone). A part file written for another run folder, other inputs or
other settings is refused by name; ``--restart`` discards it.

Several processes. Launched by ``torchrun`` or ``accelerate launch`` (which set ``RANK`` and ``WORLD_SIZE``),
process ``r`` of ``n`` predicts every ``n``-th group of inputs and writes its own part file
``OUT.part-r-of-n.jsonl``; when all are done (a barrier of ``torch.distributed`` over gloo), process 0 merges them
into one output in input order, equal to the one a single process writes. On several machines the output's folder
must be shared by all of them. A resumed run may use another number of processes: every part file of the output
counts.

Per-speaker normalisation moves each speaker's pooled vectors together, so when it is on all the inputs of one
speaker are in the same block (a block may then hold more than ``block_size`` inputs), and the result does not
depend on the blocks.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np
from tqdm.auto import tqdm

from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance
from abhinaya.predict.inputs import NothingToPredict
from abhinaya.predict.long_audio import Recording, RecordingPredictions
from abhinaya.predictions import DimensionTable, PredictionTable

PART_VERSION = 1
DEFAULT_BLOCK_SIZE = 256


class StreamError(ValueError):
    """A part file that cannot be resumed from, or shards that cannot be merged."""


@dataclass
class BlockResult:
    """What a block of inputs gives: the table and, when long audio is segmented, a ``Recording`` per usable input
    (None otherwise), and with ``members`` each member's own table (system runs)."""

    table: PredictionTable | None
    recordings: list[Recording] | None = None
    segmented: bool = False
    members: dict[str, PredictionTable] = field(default_factory=dict)
    dimensions: DimensionTable | None = None  # a model with a dimension head: its dimensions of the table's rows


class BlockPredictor(Protocol):
    """A loaded model (member run or system) as the stream drives it."""

    groups_speakers: bool  # True: a speaker's inputs must share a block (per-speaker normalisation is on)

    def fingerprint(self) -> dict: ...

    def predict_block(self, utterances: Sequence[Utterance], progress: bool) -> BlockResult: ...


def once(report: Callable[[str], None]) -> Callable[[str], None]:
    """``report`` that says each distinct message once (block after block, the same note would repeat)."""
    said: set[str] = set()

    def say(message: str) -> None:
        if message not in said:
            said.add(message)
            report(message)

    return say


# ----------------------------------------------------------------------------- processes
def process_shard() -> tuple[int, int]:
    """``(rank, world size)`` as ``torchrun`` / ``accelerate launch`` set them (``RANK``, ``WORLD_SIZE``); ``(0, 1)``
    in a plain process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError:
        raise StreamError(f"RANK={os.environ.get('RANK')!r} / WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} are not "
                          "whole numbers") from None
    if world < 1 or not 0 <= rank < world:
        raise StreamError(f"RANK={rank} is not a process of WORLD_SIZE={world}")
    return rank, world


def wait_for_all(world: int) -> None:
    """Block until every process of ``world`` gets here (``torch.distributed`` over gloo, set up from the launcher's
    environment when not already)."""
    if world <= 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        # Shards take unequal times: the others wait for the slowest one, however long it runs.
        dist.init_process_group("gloo", timeout=timedelta(days=7))
    dist.barrier()


def finish_processes(world: int) -> None:
    if world <= 1:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- blocks
def speaker_groups(utterances: Sequence[Utterance], by_speaker: bool) -> list[list[int]]:
    """Input numbers in groups that must be predicted together, in order of their first input: one group per
    speaker with ``by_speaker`` (inputs without a speaker alone), else one group per input."""
    if not by_speaker:
        return [[i] for i in range(len(utterances))]
    groups: dict[object, list[int]] = {}
    for i, utt in enumerate(utterances):
        key = ("speaker", utt.speaker) if utt.speaker is not None else ("input", i)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def blocks_of(groups: Sequence[Sequence[int]], block_size: int) -> Iterator[list[int]]:
    """Consecutive groups joined into blocks of at least ``block_size`` inputs (fewer in the last); a group is never
    split."""
    block: list[int] = []
    for group in groups:
        block += group
        if len(block) >= block_size:
            yield block
            block = []
    if block:
        yield block


# ----------------------------------------------------------------------------- part files
def part_path(output: Path, rank: int, world: int) -> Path:
    return output.with_name(f"{output.name}.part-{rank}-of-{world}.jsonl")


def part_files(output: Path) -> list[Path]:
    """Every part file of ``output``, whatever number of processes wrote it."""
    return sorted(output.parent.glob(f"{output.name}.part-*-of-*.jsonl"))


def input_digest(utterances: Sequence[Utterance]) -> str:
    """A digest of the inputs in order (ids, audio paths, speakers, texts): part files of other inputs differ."""
    h = hashlib.sha256()
    for utt in utterances:
        h.update(json.dumps([utt.id, utt.audio, utt.speaker, utt.text]).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()[:16]


def _table_json(table: PredictionTable | None) -> dict | None:
    if table is None:
        return None
    return {
        "ids": list(table.ids),
        "labels": list(table.labels),
        "probs": None if table.probs is None else [[round(float(p), 7) for p in row] for row in table.probs],
        "label_set": None if table.label_set is None else list(table.label_set),
    }


def _recording_json(rec: Recording) -> dict:
    return {"id": rec.id, "audio": rec.audio, "duration": rec.duration, "segmented": rec.segmented,
            "rows": [list(row) for row in rec.rows], "detector": rec.detector}


def _recording_from(data: dict) -> Recording:
    return Recording(data["id"], data["audio"], data["duration"], data["segmented"],
                     [tuple(row) for row in data["rows"]], data.get("detector"))


def read_part(path: Path, meta: dict) -> list[dict]:
    """The complete block lines of a part file written with ``meta`` (a torn last line is dropped: that block is
    redone). A part file of another prediction is refused."""
    blocks = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
        try:
            head = json.loads(first)
        except json.JSONDecodeError:
            return []  # cut before its header was complete: nothing in it counts
        if head.get("meta") != meta:
            raise StreamError(
                f"{path} was written by another prediction (other run folder, inputs or settings); remove it, "
                "or rerun with --restart to start afresh"
            )
        for line in handle:
            if not line.endswith("\n"):
                break  # cut by an interruption
            try:
                blocks.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return blocks


class PartWriter:
    """Appends block lines to one part file; each line is flushed and synced, so what an interruption leaves is
    whole lines and at most one torn one."""

    def __init__(self, path: Path, meta: dict):
        self.path = path
        fresh = not path.exists() or path.stat().st_size == 0
        if not fresh:
            with path.open("rb") as handle:  # a line cut by an interruption is cut off, so appends start clean
                data = handle.read()
            keep = data[: data.rfind(b"\n") + 1]
            if keep != data:
                path.write_bytes(keep)
            fresh = not keep
        self.handle = path.open("a", encoding="utf-8")
        if fresh:
            self._write({"meta": meta})

    def _write(self, record: dict) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def write_block(self, indices: Sequence[int], result: BlockResult) -> None:
        self._write({
            "indices": list(indices),
            "table": _table_json(result.table),
            "recordings": None if result.recordings is None else [_recording_json(r) for r in result.recordings],
            "segmented": bool(result.segmented),
            "members": {name: _table_json(t) for name, t in result.members.items()},
            "dimensions": None if result.dimensions is None else {
                "ids": list(result.dimensions.ids), "names": list(result.dimensions.names),
                "values": [[round(float(v), 6) for v in row] for row in result.dimensions.values]},
        })

    def close(self) -> None:
        self.handle.close()


# ----------------------------------------------------------------------------- merging
@dataclass
class StreamResult:
    """The merged prediction (``result``) with each member's own table (system runs with ``members``), and counts."""

    result: RecordingPredictions
    members: dict[str, PredictionTable]
    num_inputs: int
    num_without_prediction: int
    num_resumed: int
    dimensions: DimensionTable | None = None


def _order_keys(utterances: Sequence[Utterance], block: dict) -> dict[str, tuple[int, int]]:
    """``row id -> (input number, position)`` for a block's rows: plain rows are inputs, segment rows belong to
    their recording."""
    number = {utterances[i].id: i for i in block["indices"]}
    keys: dict[str, tuple[int, int]] = {}
    for rec in block.get("recordings") or []:
        for position, row in enumerate(rec["rows"]):
            keys[row[0]] = (number[rec["id"]], position)
    for row_id in (block["table"] or {}).get("ids", []):
        if row_id not in keys:
            if row_id not in number:
                raise StreamError(f"row {row_id!r} of a part file belongs to no input of its block")
            keys[row_id] = (number[row_id], 0)
    return keys


def _merge_tables(parts: list[tuple[dict, dict[str, tuple[int, int]]]], source: str | None) -> PredictionTable | None:
    rows = []
    label_names = None
    for data, keys in parts:
        if data is None:
            continue
        label_names = label_names or data["label_set"]
        for j, row_id in enumerate(data["ids"]):
            rows.append((keys.get(row_id, (1 << 62, j)), row_id, data["labels"][j],
                         None if data["probs"] is None else data["probs"][j]))
    if not rows:
        return None
    rows.sort(key=lambda row: row[0])
    with_probs = all(row[3] is not None for row in rows) and label_names is not None
    return PredictionTable(
        [row[1] for row in rows], [row[2] for row in rows],
        np.array([row[3] for row in rows], dtype=np.float64) if with_probs else None,
        LabelSet(label_names) if with_probs else None,
        source=source,
    )


def merge_parts(blocks: list[dict], utterances: Sequence[Utterance], source: str | None) -> StreamResult:
    """One result in input order from the block lines of every part file (a block predicted twice, by a resumed
    run, counts once: its last line)."""
    latest: dict[tuple[int, ...], dict] = {}
    for block in blocks:
        latest[tuple(block["indices"])] = block
    covered = sorted(i for key in latest for i in key)
    if len(covered) != len(set(covered)) or len(covered) != len(utterances):
        missing = sorted(set(range(len(utterances))) - set(covered))
        raise StreamError(
            f"the part files cover {len(set(covered))} of {len(utterances)} inputs"
            + (f" (missing: {', '.join(utterances[i].id for i in missing[:3])}...)" if missing else "")
            + "; with several machines the output's folder must be shared by all of them"
        )
    parts = [(block, _order_keys(utterances, block)) for block in latest.values()]
    table = _merge_tables([(block["table"], keys) for block, keys in parts], source)
    recordings = None
    if any(block.get("segmented") for block in latest.values()):
        found = {}
        for block, _ in parts:
            for rec in block.get("recordings") or []:
                found[rec["id"]] = _recording_from(rec)
        recordings = [found[u.id] for u in utterances if u.id in found]
    names = sorted({name for block in latest.values() for name in block.get("members") or {}})
    members = {}
    for name in names:
        merged = _merge_tables([(block["members"].get(name), keys) for block, keys in parts], name)
        if merged is not None:
            members[name] = merged
    dimensions = None
    found = [(block["dimensions"], keys) for block, keys in parts if block.get("dimensions")]
    if found:
        rows = sorted((keys.get(i, (1 << 62, 0)), i, v) for data, keys in found
                      for i, v in zip(data["ids"], data["values"]))
        dimensions = DimensionTable([r[1] for r in rows], found[0][0]["names"], [r[2] for r in rows])
    predicted = set()
    if table is not None:
        keys_all = {}
        for _, keys in parts:
            keys_all.update(keys)
        predicted = {keys_all[row_id][0] for row_id in table.ids if row_id in keys_all}
    return StreamResult(
        RecordingPredictions(table, recordings) if table is not None else None,
        members, len(utterances), len(utterances) - len(predicted), 0, dimensions,
    )


# ----------------------------------------------------------------------------- the driver
def predict_streaming(
    predictor: BlockPredictor,
    utterances: Sequence[Utterance],
    output: str | Path,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    restart: bool = False,
    progress: bool = True,
    report: Callable[[str], None] = print,
    source: str | None = None,
) -> StreamResult | None:
    """Predict ``utterances`` (gathered, in input order) a block at a time into part files next to ``output``, then
    merge them (see the module docstring). Returns the merged result in the process that merges (rank 0) and None in
    the others; the caller writes the outputs."""
    if block_size < 1:
        raise StreamError(f"block size must be at least 1, got {block_size}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    rank, world = process_shard()
    meta = json.loads(json.dumps({"version": PART_VERSION, "inputs": len(utterances),
                                  "digest": input_digest(utterances), **predictor.fingerprint()}))
    if restart and rank == 0:
        for path in part_files(output):
            path.unlink()
    wait_for_all(world)  # nobody reads part files while process 0 may be removing them
    done: set[int] = set()
    for path in part_files(output):
        for block in read_part(path, meta):
            done.update(block["indices"])
    groups = speaker_groups(utterances, predictor.groups_speakers)
    mine = [g for position, g in enumerate(groups) if position % world == rank]
    todo = [g for g in mine if not all(i in done for i in g)]
    resumed = sum(len(g) for g in mine) - sum(len(g) for g in todo)
    if resumed and rank == 0:
        report(f"resuming: {resumed} input(s) already predicted in {', '.join(p.name for p in part_files(output))}")
    total = sum(len(g) for g in todo)
    writer = PartWriter(part_path(output, rank, world), meta)
    shown = progress and rank == 0
    started = last_line = time.monotonic()
    finished = 0
    try:
        with tqdm(total=total, desc="predict", unit="input", disable=None if shown else True) as bar:
            for block in blocks_of(todo, block_size):
                chosen = [utterances[i] for i in block]
                try:
                    result = predictor.predict_block(chosen, progress=False)
                except NothingToPredict:
                    result = BlockResult(None)
                writer.write_block(block, result)
                finished += len(block)
                bar.update(len(block))
                now = time.monotonic()
                if rank == 0 and bar.disable and now - last_line > 30 and finished < total:
                    rate = finished / (now - started)
                    report(f"{finished}/{total} inputs predicted, about {(total - finished) / rate / 60:.0f} min left")
                    last_line = now
    finally:
        writer.close()
    wait_for_all(world)
    try:
        if rank != 0:
            return None
        blocks = [block for path in part_files(output) for block in read_part(path, meta)]
        merged = merge_parts(blocks, utterances, source)
        merged.num_resumed = resumed
        return merged
    finally:
        finish_processes(world)


def remove_parts(output: str | Path) -> None:
    """Remove the part files of ``output`` (after its outputs are written)."""
    for path in part_files(Path(output)):
        path.unlink(missing_ok=True)


__all__ = [
    "BlockPredictor",
    "BlockResult",
    "DEFAULT_BLOCK_SIZE",
    "NothingToPredict",
    "StreamError",
    "StreamResult",
    "blocks_of",
    "merge_parts",
    "part_files",
    "predict_streaming",
    "process_shard",
    "remove_parts",
    "speaker_groups",
]
