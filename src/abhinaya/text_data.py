"""Transcripts as model input: the text members' dataset and batches.

A ``TextDataset`` turns manifest rows into token ids with a prompt template
(``TextConfig.template``, where ``{text}`` is the transcript). Rows without a
transcript cannot be used by a text member: with ``on_error="skip"`` they are
recorded in ``errors`` (naming the utterance) and left out, so every other row
is still served; with ``"raise"`` the first one is an error.

Lengths are token counts, so the shared ``LengthBucketSampler`` forms batches
of similar length and padding stays small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch

from .data import check_known_labels
from .labels import LabelSet
from .manifest import Utterance


class TextError(ValueError):
    """A manifest row that a text member cannot use (its message names the utterance)."""


@dataclass
class TextConfig:
    """How a transcript becomes model input.

    Attributes:
        template: the text given to the model; ``{text}`` is replaced by the transcript.
        max_tokens: longer inputs are cut to this many tokens (the end of the transcript is dropped).
        add_special_tokens: let the tokenizer add its begin-of-sequence token(s).
    """

    template: str = "{text}"
    max_tokens: int = 128
    add_special_tokens: bool = True

    def __post_init__(self) -> None:
        if "{text}" not in self.template:
            raise ValueError(f"text template {self.template!r} must contain {{text}}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")


def transcript_of(utt: Utterance) -> str:
    """The utterance's transcript, stripped; a ``TextError`` when there is none."""
    text = (utt.text or "").strip()
    if not text:
        raise TextError(f"{utt.id}: no transcript (text is empty); fill it with `abhinaya transcribe`")
    return text


class TextDataset:
    """Utterances -> ``{"index", "id", "input_ids", "label"}`` items.

    ``input_ids`` is a list of token ids (at most ``config.max_tokens``);
    ``label`` the class index in ``label_set`` (-1 when unlabelled or without a
    label set). Tokenisation happens once, at construction.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        label_set: LabelSet | None,
        tokenizer,
        config: TextConfig | None = None,
        *,
        on_error: Literal["raise", "skip"] = "raise",
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.config = config if config is not None else TextConfig()
        self.label_set = label_set
        self.errors: list[str] = []
        check_known_labels(utterances, label_set)
        kept: list[Utterance] = []
        texts: list[str] = []
        for utt in utterances:
            try:
                texts.append(self.config.template.replace("{text}", transcript_of(utt)))
            except TextError as err:
                if on_error == "raise":
                    raise
                self.errors.append(str(err))
                continue
            kept.append(utt)
        self._utterances = kept
        encoded = tokenizer(texts, add_special_tokens=self.config.add_special_tokens)["input_ids"] if texts else []
        self._input_ids = [list(ids)[: self.config.max_tokens] for ids in encoded]
        encode = label_set.encode if label_set is not None else None
        self._labels = [encode(u.label) if encode is not None and u.label is not None else -1 for u in kept]

    @property
    def utterances(self) -> tuple[Utterance, ...]:
        return tuple(self._utterances)

    @property
    def ids(self) -> list[str]:
        return [u.id for u in self._utterances]

    @property
    def labels(self) -> list[int]:
        return list(self._labels)

    @property
    def lengths(self) -> list[int]:
        """Tokens per utterance (for length bucketing)."""
        return [len(ids) for ids in self._input_ids]

    def set_epoch(self, epoch: int) -> None:
        """Text items do not change between epochs (kept for the training loop's interface)."""

    def __len__(self) -> int:
        return len(self._utterances)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "index": index,
            "id": self._utterances[index].id,
            "input_ids": self._input_ids[index],
            "label": self._labels[index],
        }


def collate_text(items: Sequence[dict], pad_id: int) -> dict[str, Any]:
    """Right-pad ``TextDataset`` items into a batch.

    Returns ``input_ids`` (B, T) long padded with ``pad_id``; ``attention_mask``
    (B, T) long, 1 on real tokens; ``lengths`` (B,) long; ``labels`` (B,) long
    (-1 = unlabelled); ``index`` (B,) long; ``ids`` list of B strings.
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    lengths = torch.tensor([len(item["input_ids"]) for item in items], dtype=torch.long)
    width = max(1, int(lengths.max()))
    input_ids = torch.full((len(items), width), int(pad_id), dtype=torch.long)
    attention_mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item["input_ids"])
        input_ids[row, :n] = torch.tensor(item["input_ids"], dtype=torch.long)
        attention_mask[row, :n] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "lengths": lengths,
        "labels": torch.tensor([int(item["label"]) for item in items], dtype=torch.long),
        "index": torch.tensor([int(item["index"]) for item in items], dtype=torch.long),
        "ids": [str(item["id"]) for item in items],
    }


__all__ = ["TextConfig", "TextDataset", "TextError", "collate_text", "transcript_of"]
