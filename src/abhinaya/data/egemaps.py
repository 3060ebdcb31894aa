"""Utterance-level acoustic functionals (eGeMAPS) computed with openSMILE.

``EgemapsDataset`` turns manifest utterances into one fixed-size float32 vector each: the functionals of an openSMILE
feature set (``FEATURE_SETS``; eGeMAPSv02 by default, 88 values: statistics of pitch, loudness, jitter, shimmer,
formants, spectral balance and the rate of voiced segments over the whole utterance) of the audio loaded by
``abhinaya.audio.load_audio`` at 16 kHz. ``collate_features`` stacks items into a batch.

Each utterance's vector is computed once: it is kept in memory for the dataset's lifetime and, with ``cache_dir``,
on disk through ``weights.feature_cache.EncoderFeatureCache``, keyed by the audio file's absolute path, size and
modification time, the feature set, the sample rate and the openSMILE version (a file changed in place, or another
feature set, is a new entry).

Training and inference see the same vectors: there is no training-time augmentation (no crop, gain or noise), since
the functionals of an utterance are computed once and reused every epoch. ``train`` is accepted for the members'
common interface and changes nothing.

openSMILE is an optional dependency (``pip install 'abhinaya[acoustic]'``); constructing a dataset without it raises
an ``ImportError`` that says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from abhinaya.audio import AudioError, load_audio
from abhinaya.data.audio import as_utterance, check_known_labels, utterances_with_audio
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance

__all__ = ["FEATURE_SETS", "SAMPLE_RATE", "EgemapsDataset", "collate_features", "feature_count", "import_opensmile"]

# openSMILE feature sets supported, and the number of functionals each gives per utterance.
FEATURE_SETS: dict[str, int] = {"eGeMAPSv02": 88, "GeMAPSv01b": 62}
# The rate every file is resampled to before extraction (Hz).
SAMPLE_RATE = 16_000


def feature_count(feature_set: str) -> int:
    """The number of functionals of ``feature_set``; a ``ValueError`` for an unsupported name."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; supported: {', '.join(FEATURE_SETS)}")
    return FEATURE_SETS[feature_set]


def import_opensmile():
    """The ``opensmile`` module, or an ``ImportError`` that says how to install it."""
    try:
        import opensmile
    except ImportError as err:
        raise ImportError(
            "eGeMAPS features need the opensmile package, which is not installed: pip install 'abhinaya[acoustic]'"
        ) from err
    return opensmile


class EgemapsDataset(Dataset):
    """Utterances -> ``{"index", "id", "features", "label"}`` items.

    ``features`` is a float32 tensor ``(F,)`` (F = ``feature_count(feature_set)``); ``label`` the class index in
    ``label_set``, or -1 for an unlabelled utterance or when ``label_set`` is None. ``utterances`` are manifest
    ``Utterance`` objects or plain audio paths (the id is then the file's base name). A label outside ``label_set``
    is a ``ValueError`` at construction.

    Errors, as ``data.audio.AudioDataset``: with ``on_error="raise"`` (default) the ``AudioError`` of an unusable
    file (its message starts with the path: unreadable, shorter than ``min_seconds``, silent, or functionals that
    are not finite) propagates from ``scan`` or from item access. With ``on_error="skip"``, ``scan()`` computes every
    vector up front (at construction unless ``check=False``), records each failure in ``errors`` as ``"PATH:
    reason"`` and removes that utterance; indices refer to the remaining ones. ``notes`` stays empty: the whole
    utterance is always used.

    ``lengths`` are all 1 (every item is one vector of the same size), so length bucketing keeps the random order
    in training and the dataset order at inference. ``progress``: show a progress bar while ``scan`` computes.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance | str | Path],
        label_set: LabelSet | None = None,
        feature_set: str = "eGeMAPSv02",
        *,
        train: bool = False,
        cache_dir: str | Path | None = None,
        min_seconds: float = 0.1,
        on_error: Literal["raise", "skip"] = "raise",
        check: bool | None = None,
        progress: bool = False,
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.num_features = feature_count(feature_set)
        self._opensmile = import_opensmile()
        self.feature_set = feature_set
        self.label_set = label_set
        self.train = bool(train)
        self.min_seconds = float(min_seconds)
        self.on_error = on_error
        self.progress = bool(progress)
        self.errors: list[str] = []
        self.notes: list[str] = []
        self._smile = None
        self._memory: dict[str, np.ndarray] = {}
        self._disk = None
        if cache_dir is not None:
            from abhinaya.weights.feature_cache import EncoderFeatureCache

            self._disk = EncoderFeatureCache(cache_dir, f"opensmile-{feature_set}-{SAMPLE_RATE // 1000}k")

        items = [as_utterance(u) for u in utterances]
        check_known_labels(items, label_set)
        self._set_utterances(utterances_with_audio(items, on_error, self.errors))
        if check is None:
            check = on_error == "skip"
        if check:
            self.scan()

    def _set_utterances(self, utterances: list[Utterance]) -> None:
        self._utterances = utterances
        encode = self.label_set.encode if self.label_set is not None else None
        self._labels = [encode(u.label) if encode is not None and u.label is not None else -1 for u in utterances]

    @property
    def utterances(self) -> tuple[Utterance, ...]:
        """The utterances served, in index order (unusable files excluded after ``scan``)."""
        return tuple(self._utterances)

    @property
    def ids(self) -> list[str]:
        return [u.id for u in self._utterances]

    @property
    def labels(self) -> list[int]:
        """Class index per utterance, -1 where unlabelled."""
        return list(self._labels)

    @property
    def lengths(self) -> list[int]:
        return [1] * len(self._utterances)

    def set_epoch(self, epoch: int) -> None:
        """Nothing changes between epochs (no augmentation); kept for the members' common interface."""

    def __len__(self) -> int:
        return len(self._utterances)

    def scan(self) -> list[str]:
        """Compute every vector; return the new ``"PATH: reason"`` errors (``on_error="skip"``: those utterances are
        removed; ``"raise"``: the first ``AudioError`` is raised)."""
        kept: list[Utterance] = []
        found: list[str] = []
        bar = tqdm(self._utterances, desc=f"{self.feature_set} features",
                   disable=None if self.progress else True, leave=False,
                   unit="file")
        for utt in bar:
            try:
                self.features(utt)
            except AudioError as err:
                if self.on_error == "raise":
                    raise
                found.append(str(err))
                continue
            kept.append(utt)
        self._set_utterances(kept)
        self.errors.extend(found)
        return found

    def features(self, utt: Utterance) -> np.ndarray:
        """The float32 functionals ``(F,)`` of one utterance (from memory, the disk cache, or computed)."""
        vector = self._memory.get(utt.audio)
        if vector is not None:
            return vector
        key = self._disk_key(utt.audio) if self._disk is not None else None
        if key is not None:
            stored = self._disk.get(key)
            if stored is not None and stored.shape == (self.num_features,) and np.isfinite(stored).all():
                vector = np.array(stored, dtype=np.float32)
        if vector is None:
            wave = load_audio(utt.audio, SAMPLE_RATE, min_duration=self.min_seconds)
            vector = self._extract(wave, utt.audio)
            if key is not None:
                self._disk.put(key, vector)
        self._memory[utt.audio] = vector
        return vector

    def _extract(self, wave: np.ndarray, path: str) -> np.ndarray:
        if self._smile is None:
            opensmile = self._opensmile
            self._smile = opensmile.Smile(
                feature_set=opensmile.FeatureSet[self.feature_set],
                feature_level=opensmile.FeatureLevel.Functionals,
            )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Segment too short")  # reported below as an AudioError
            frame = self._smile.process_signal(wave, SAMPLE_RATE)
        vector = np.asarray(frame.to_numpy(), dtype=np.float32).reshape(-1)
        if vector.shape != (self.num_features,):
            raise AudioError(path, f"openSMILE gave {vector.size} {self.feature_set} values, expected {self.num_features}")
        bad = int((~np.isfinite(vector)).sum())
        if bad:
            raise AudioError(path, f"{bad} of the {self.num_features} {self.feature_set} functionals are not finite "
                                   f"(audio too short to analyse?)")
        return vector

    def _disk_key(self, audio: str) -> str | None:
        """The disk-cache key of an audio file, or None when it cannot be read (the load then reports why)."""
        try:
            path = Path(audio).resolve()
            stat = os.stat(path)
        except OSError:
            return None
        identity = {
            "path": str(path),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "feature_set": self.feature_set,
            "sample_rate": SAMPLE_RATE,
            "opensmile": getattr(self._opensmile, "__version__", "unknown"),
        }
        return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < len(self._utterances):
            raise IndexError(f"index {index} out of range for {len(self._utterances)} utterances")
        utt = self._utterances[index]
        return {
            "index": index,
            "id": utt.id,
            "features": torch.from_numpy(self.features(utt).copy()),
            "label": self._labels[index],
        }


def collate_features(items: Sequence[dict]) -> dict[str, Any]:
    """Stack ``EgemapsDataset`` items: ``features`` (B, F) float32, ``labels`` (B,) long (-1 = unlabelled),
    ``index`` (B,) long, ``ids`` list of B strings."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    return {
        "features": torch.stack([item["features"] for item in items]),
        "labels": torch.tensor([int(item["label"]) for item in items], dtype=torch.long),
        "index": torch.tensor([int(item["index"]) for item in items], dtype=torch.long),
        "ids": [str(item["id"]) for item in items],
    }
