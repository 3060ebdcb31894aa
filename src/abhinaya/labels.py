"""Canonical emotion names, corpus label mappings and the ``LabelSet``.

A ``LabelSet`` fixes the class order of a model (index ``i`` is logit ``i``) and
is saved next to the model's weights, so that predictions never depend on the
order in which classes happened to appear in a manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

CANONICAL_LABELS: tuple[str, ...] = (
    "angry",
    "sad",
    "happy",
    "surprise",
    "fear",
    "disgust",
    "contempt",
    "neutral",
    "calm",
    "boredom",
)

# MSP-Podcast EmoClass letters. O (other) and X (no agreement) are not classes.
MSP_PODCAST_CODES: dict[str, str] = {
    "A": "angry",
    "S": "sad",
    "H": "happy",
    "U": "surprise",
    "F": "fear",
    "D": "disgust",
    "C": "contempt",
    "N": "neutral",
}
MSP_PODCAST_NON_CLASSES: frozenset[str] = frozenset({"O", "X"})
# The eight challenge classes in the order of the letter table above.
MSP_PODCAST_LABELS: tuple[str, ...] = tuple(MSP_PODCAST_CODES.values())

# RAVDESS emotion field (third field of the file name).
RAVDESS_CODES: dict[str, str] = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}
RAVDESS_LABELS: tuple[str, ...] = tuple(RAVDESS_CODES.values())

# EmoDB emotion letter (sixth character of the file name, German initials).
EMODB_CODES: dict[str, str] = {
    "W": "angry",  # Wut
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fear",  # Angst
    "F": "happy",  # Freude
    "T": "sad",  # Trauer
    "N": "neutral",
}
EMODB_LABELS: tuple[str, ...] = ("angry", "boredom", "disgust", "fear", "happy", "sad", "neutral")

# MELD Emotion column.
MELD_NAMES: dict[str, str] = {
    "neutral": "neutral",
    "joy": "happy",
    "surprise": "surprise",
    "anger": "angry",
    "sadness": "sad",
    "disgust": "disgust",
    "fear": "fear",
}
MELD_LABELS: tuple[str, ...] = ("neutral", "happy", "surprise", "angry", "sad", "disgust", "fear")

# Spellings users and corpora commonly use for the canonical names.
LABEL_ALIASES: dict[str, str] = {
    "anger": "angry",
    "mad": "angry",
    "sadness": "sad",
    "happiness": "happy",
    "joy": "happy",
    "surprised": "surprise",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "disgusted": "disgust",
    "contemptuous": "contempt",
    "bored": "boredom",
}


def canonical_label(name: str) -> str:
    """Map a label spelling (any case, common synonyms) to its canonical name.

    Raises ``ValueError`` naming the label when it is not an emotion we know.
    """
    key = str(name).strip().lower()
    if key in CANONICAL_LABELS:
        return key
    if key in LABEL_ALIASES:
        return LABEL_ALIASES[key]
    raise ValueError(
        f"unknown emotion label {name!r}; known labels: {', '.join(CANONICAL_LABELS)} "
        f"(and the synonyms {', '.join(sorted(LABEL_ALIASES))})"
    )


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of class names. ``labels[i]`` is the class of logit ``i``.

    Names are kept as given (custom label sets are allowed); corpus preparers
    write canonical names, so the standard sets hold canonical names only.
    """

    labels: tuple[str, ...]

    def __init__(self, labels: Iterable[str]):
        labels = tuple(str(label) for label in labels)
        if not labels:
            raise ValueError("a LabelSet needs at least one class")
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"duplicate class names in LabelSet: {duplicates}")
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self):
        return iter(self.labels)

    def __contains__(self, label: object) -> bool:
        return label in self.labels

    @property
    def index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def encode(self, label: str) -> int:
        """Class name -> index; a name outside the set is a ``KeyError`` naming it."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise KeyError(f"label {label!r} is not in this label set {list(self.labels)}") from None

    def encode_many(self, labels: Sequence[str]) -> list[int]:
        return [self.encode(label) for label in labels]

    def decode(self, index: int) -> str:
        if not 0 <= int(index) < len(self.labels):
            raise IndexError(f"class index {index} out of range for {len(self.labels)} classes")
        return self.labels[int(index)]

    def decode_many(self, indices: Iterable[int]) -> list[str]:
        return [self.decode(i) for i in indices]

    @classmethod
    def from_labels(cls, labels: Iterable[str | None], order: Sequence[str] | None = None) -> "LabelSet":
        """Label set of the labels seen (``None`` ignored).

        Classes follow ``order`` where given (classes of ``order`` that were not
        seen are kept, so a class absent from a split still counts), then any
        other seen class in canonical order, then alphabetically.
        """
        seen = {label for label in labels if label is not None}
        ordered = list(order) if order is not None else []
        rest = sorted(seen - set(ordered), key=lambda x: (CANONICAL_LABELS.index(x) if x in CANONICAL_LABELS else len(CANONICAL_LABELS), x))
        return cls(ordered + rest)

    def to_dict(self) -> dict:
        return {"labels": list(self.labels)}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "LabelSet":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(data["labels"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a label-set file ({err})") from None


CORPUS_LABEL_SETS: dict[str, LabelSet] = {
    "msp-podcast": LabelSet(MSP_PODCAST_LABELS),
    "ravdess": LabelSet(RAVDESS_LABELS),
    "emodb": LabelSet(EMODB_LABELS),
    "meld": LabelSet(MELD_LABELS),
}
