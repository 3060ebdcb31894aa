"""Several corpora in one model (``data.corpora``).

Each corpus of the list is prepared (or read from its manifest) on its own, its labels renamed into the model's
label set (``label_map``; a label mapped to null is left out), its own dev and test speakers moved out of training,
and then the corpora are joined:

- every utterance carries its corpus (``Utterance.corpus``) and a corpus-qualified speaker, ``<name>:<speaker>``, so
  that two corpora's speaker "03" stay two speakers (per-speaker normalisation, splits, reports);
- ids are kept as the corpus gives them, so that a prediction table of the corpus's own files still matches; two
  corpora giving the same id is an error naming both;
- the model's classes are ``data.labels`` or every class of any corpus, in the canonical order.

A corpus without some class (EmoDB has no calm, RAVDESS no boredom) must not be taught to deny it: its utterances'
loss sees only the classes the corpus has (``class_masks``: the other logits are pushed to -inf before the loss), and
its dev and test figures choose among those classes only (``restrict_to_corpus``). A recording of no known corpus is
predicted over every class.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from abhinaya.labels import CANONICAL_LABELS, LabelSet
from abhinaya.manifest import Utterance, read_manifest
from abhinaya.recipes import CorpusSource, DataConfig

CORPUS_SEPARATOR = ":"


def qualified_speaker(corpus: str, speaker: str | None) -> str | None:
    """``<corpus>:<speaker>`` (None stays None)."""
    return None if speaker is None else f"{corpus}{CORPUS_SEPARATOR}{speaker}"


def _source_utterances(source: CorpusSource, root: str | None, workdir: Path, log: Callable[[str], None]):
    if source.manifest:
        return read_manifest(source.manifest)
    if not root:
        raise ValueError(
            f"data.corpora {source.name}: no folder or manifest; set it with --set data.roots.{source.name}=DIR"
        )
    from abhinaya.corpora import prepare_corpus, summarize

    manifest = workdir / "data" / f"{source.name}.jsonl"
    if not manifest.is_file():
        layout = source.corpus or source.name
        log(f"preparing {layout} from {root} -> {manifest}")
        result = prepare_corpus(layout, root, manifest, **source.prepare)
        for problem in result.problems:
            log(f"problem: {problem}")
        log(summarize(result))
    return read_manifest(manifest)


def load_corpora(config: DataConfig, workdir: str | Path, log: Callable[[str], None] = print) -> list[Utterance]:
    """The utterances of every corpus of ``config.corpora``, joined (module docstring)."""
    from abhinaya.corpora.splits import apply_speaker_split

    workdir = Path(workdir)
    joined: list[Utterance] = []
    owner: dict[str, str] = {}
    for source in config.corpora:
        root = config.roots.get(source.name) or source.root
        utterances = _source_utterances(source, root, workdir, log)
        dropped = set(config.drop_labels) | set(source.drop_labels)
        renamed = []
        for utt in utterances:
            label = utt.label
            if label is not None and label in source.label_map:
                label = source.label_map[label]
                if label is None:
                    continue
            if label in dropped:
                continue
            renamed.append(replace(utt, label=label))
        if source.dev_speakers or source.test_speakers:
            known = {u.speaker for u in renamed}
            unknown = [s for s in [*source.dev_speakers, *source.test_speakers] if s not in known]
            if unknown:
                raise ValueError(f"data.corpora {source.name}: speaker(s) {unknown} named in dev_speakers/"
                                 f"test_speakers are not in the corpus")
            moved = apply_speaker_split(renamed, dev=source.dev_speakers, test=source.test_speakers,
                                        default="__keep__")
            renamed = [m if m.split != "__keep__" else u for u, m in zip(renamed, moved)]
        for utt in renamed:
            if utt.id in owner:
                raise ValueError(f"id {utt.id!r} is in both {owner[utt.id]} and {source.name}; ids must be unique "
                                 "across data.corpora")
            owner[utt.id] = source.name
            joined.append(replace(utt, corpus=source.name, speaker=qualified_speaker(source.name, utt.speaker)))
        counts = {}
        for utt in renamed:
            counts[utt.split] = counts.get(utt.split, 0) + 1
        log(f"{source.name}: " + ", ".join(f"{n} {split}" for split, n in sorted(counts.items(), key=str)))
    return joined


def union_label_set(utterances: Sequence[Utterance], split: str) -> LabelSet:
    """Every class of the ``split`` utterances of any corpus, canonical classes first in the canonical order."""
    seen = {u.label for u in utterances if u.split == split and u.label is not None}
    order = [c for c in CANONICAL_LABELS if c in seen] + sorted(seen - set(CANONICAL_LABELS))
    return LabelSet(order)


def corpus_classes(utterances: Sequence[Utterance], label_set: LabelSet, split: str) -> dict[str, list[str]]:
    """For each corpus, the classes of ``label_set`` its ``split`` utterances have, in label-set order."""
    found: dict[str, set[str]] = {}
    for utt in utterances:
        if utt.corpus is not None and utt.split == split and utt.label in label_set:
            found.setdefault(utt.corpus, set()).add(utt.label)
    return {name: [c for c in label_set if c in classes] for name, classes in found.items()}


def class_masks(utterances: Sequence[Utterance], label_set: LabelSet,
                classes: dict[str, list[str]]) -> np.ndarray:
    """``(N, C)`` booleans: the classes each utterance's corpus has (every class for an utterance of no listed
    corpus)."""
    masks = np.ones((len(utterances), len(label_set)), dtype=bool)
    rows = {name: np.isin(np.array(list(label_set)), names) for name, names in classes.items()}
    for i, utt in enumerate(utterances):
        if utt.corpus in rows:
            masks[i] = rows[utt.corpus]
    return masks


def restrict_to_corpus(probs: np.ndarray, utterances: Sequence[Utterance], label_set: LabelSet,
                       classes: dict[str, list[str]]) -> list[str]:
    """The class of each row among its corpus's classes (``corpus_classes``), from ``probs`` ``(N, C)``."""
    if not len(probs):
        return []
    masked = np.where(class_masks(utterances, label_set, classes), probs, -np.inf)
    return [label_set.decode(int(i)) for i in masked.argmax(axis=1)]


def group_ids(utterances: Sequence[Utterance]) -> tuple[np.ndarray, list[str]]:
    """``(group index per utterance, group names)``: utterances grouped by corpus, in order of first appearance."""
    names: list[str] = []
    index: dict[str | None, int] = {}
    out = np.empty(len(utterances), dtype=np.int64)
    for i, utt in enumerate(utterances):
        key = utt.corpus
        if key not in index:
            index[key] = len(names)
            names.append(key or "")
        out[i] = index[key]
    return out, names


__all__ = [
    "class_masks",
    "corpus_classes",
    "group_ids",
    "load_corpora",
    "qualified_speaker",
    "restrict_to_corpus",
    "union_label_set",
]
