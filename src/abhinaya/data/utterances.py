"""The data side of a recipe: which corpus, which manifest, which speakers
are held out. Shared by every member.

A recipe names either a prepared ``manifest`` or a corpus folder ``root``
(with ``corpus`` saying its layout); in the latter case the manifest is
prepared into the run folder on first use. Speakers listed in
``dev_speakers`` / ``test_speakers`` are moved to those splits, so that a
model is never selected or evaluated on a speaker it was trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from abhinaya.corpora.splits import apply_speaker_split
from abhinaya.labels import CORPUS_LABEL_SETS, LabelSet
from abhinaya.manifest import Utterance, read_manifest
from abhinaya.recipes import DataConfig


def load_experiment_utterances(config: DataConfig, workdir: str | Path, log=print) -> list[Utterance]:
    """Read (preparing if needed) the experiment's manifest and apply the
    speaker hold-outs. Preparation writes ``workdir/data/manifest.jsonl`` (one ``<name>.jsonl`` per corpus of
    ``data.corpora``, whose utterances are joined as ``data/multi_corpus.py`` describes)."""
    if config.corpora:
        from abhinaya.data.multi_corpus import load_corpora

        utterances = load_corpora(config, workdir, log)
        _note_shared_speakers(utterances, config, log)
        return utterances
    if config.manifest:
        utterances = read_manifest(config.manifest)
    elif config.root:
        if not config.corpus:
            raise ValueError("data.root is set but data.corpus is not: name the corpus layout (e.g. ravdess)")
        from abhinaya.corpora import prepare_corpus, summarize

        manifest = Path(workdir) / "data" / "manifest.jsonl"
        if not manifest.is_file():
            log(f"preparing {config.corpus} from {config.root} -> {manifest}")
            result = prepare_corpus(config.corpus, config.root, manifest, **config.prepare)
            for problem in result.problems:
                log(f"problem: {problem}")
            log(summarize(result))
        utterances = read_manifest(manifest)
    else:
        raise ValueError("the recipe names no data: set data.root (corpus folder) or data.manifest")
    if config.drop_labels:
        dropped = set(config.drop_labels)
        utterances = [u for u in utterances if u.label not in dropped]
    if config.dev_speakers or config.test_speakers:
        known = {u.speaker for u in utterances}
        unknown = [s for s in list(config.dev_speakers) + list(config.test_speakers) if s not in known]
        if unknown:
            raise ValueError(f"speaker(s) {unknown} named in data.dev_speakers/test_speakers are not in the corpus")
        moved = apply_speaker_split(utterances, dev=config.dev_speakers, test=config.test_speakers, default="__keep__")
        utterances = [
            m if m.split != "__keep__" else u for u, m in zip(utterances, moved)
        ]
    _note_shared_speakers(utterances, config, log)
    return utterances


def _note_shared_speakers(utterances: list[Utterance], config: DataConfig, log) -> None:
    shared = _speakers_shared(utterances, config.train_split, config.dev_split)
    if shared:
        log(
            f"note: {len(shared)} speaker(s) are in both {config.train_split} and {config.dev_split} "
            f"(e.g. {', '.join(shared[:3])}); dev figures are not speaker-independent"
        )


def _speakers_shared(utterances: list[Utterance], a: str, b: str) -> list[str]:
    in_a = {u.speaker for u in utterances if u.split == a and u.speaker is not None}
    in_b = {u.speaker for u in utterances if u.split == b and u.speaker is not None}
    return sorted(in_a & in_b)


def experiment_label_set(config: DataConfig, utterances: list[Utterance]) -> LabelSet:
    """The model's classes: ``data.labels`` if given, else the corpus's label
    set (restricted to classes not dropped), else the labels of the training split."""
    if config.labels:
        return LabelSet(config.labels)
    if config.corpora:
        from abhinaya.data.multi_corpus import union_label_set

        return union_label_set(utterances, config.train_split)
    if config.corpus in CORPUS_LABEL_SETS:
        return LabelSet([c for c in CORPUS_LABEL_SETS[config.corpus] if c not in set(config.drop_labels)])
    train = [u.label for u in utterances if u.split == config.train_split]
    return LabelSet.from_labels(train)


def dimension_ratings(utterances, names) -> np.ndarray:
    """``(N, K)``: each utterance's ``attributes[name]`` for the K ``names`` (NaN where it has none)."""
    out = np.full((len(utterances), len(names)), np.nan)
    for i, utt in enumerate(utterances):
        for k, name in enumerate(names):
            value = (utt.attributes or {}).get(name)
            if value is not None:
                out[i, k] = float(value)
    return out
