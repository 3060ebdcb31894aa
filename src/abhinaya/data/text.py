"""Transcripts as model input: the text members' dataset and batches.

A ``TextDataset`` turns manifest rows into model input with a prompt template
(``TextConfig.template``, where ``{text}`` is the transcript): token ids when it
is given a tokenizer (T2), or the text itself without one (T1, whose model
builds its own chat prompt). ST1 and S2 read transcripts with ``transcript_of``.
``pad_token_ids`` is the one right/left padding of token lists. Rows without a
transcript cannot be used by a text member: with ``on_error="skip"`` they are
recorded in ``errors`` (naming the utterance) and left out, so every other row
is still served; with ``"raise"`` the first one is an error.

Conversation context: with ``TextConfig.context_turns`` > 0 the last turns of
the row's ``context`` (the manifest's earlier turns of the conversation) go in
front of the transcript, one per line. The model reads them, but only the
utterance's own tokens are pooled (``pool_mask``), so the prediction stays about
this utterance. Rows without context simply get none.

Lengths are token counts (word counts for raw text), so the shared
``LengthBucketSampler`` forms batches of similar length and padding stays small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch

from abhinaya.data.audio import check_known_labels
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance


class TextError(ValueError):
    """A manifest row that a text member cannot use (its message names the utterance)."""


@dataclass
class TextConfig:
    """How a transcript becomes model input.

    Attributes:
        template: the text given to the model; ``{text}`` is replaced by the transcript and ``{speaker}`` (optional)
            by the row's speaker (``unknown`` when it has none).
        max_tokens: longer utterances are cut to this many tokens (the end of the transcript is dropped).
        max_words: transcripts are first cut to their first ``max_words`` words (None: no cut).
        add_special_tokens: let the tokenizer add its begin-of-sequence token(s); they come first, before any context.
        context_turns: how many of the row's earlier conversation turns (``context``, the latest ones) are put
            before the utterance, one per line. 0 = the utterance alone.
        context_tokens: at most this many tokens of context; the oldest are dropped first.
    """

    template: str = "{text}"
    max_tokens: int = 128
    max_words: int | None = None
    add_special_tokens: bool = True
    context_turns: int = 0
    context_tokens: int = 96

    def __post_init__(self) -> None:
        if "{text}" not in self.template:
            raise ValueError(f"text template {self.template!r} must contain {{text}}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.max_words is not None and self.max_words < 1:
            raise ValueError(f"max_words must be at least 1, got {self.max_words}")
        if self.context_turns < 0:
            raise ValueError(f"context_turns must be >= 0, got {self.context_turns}")
        if self.context_tokens < 0:
            raise ValueError(f"context_tokens must be >= 0, got {self.context_tokens}")

    def render(self, utt: Utterance) -> str:
        """The utterance as the model reads it (without context); a ``TextError`` when it has no transcript."""
        text = cut_words(transcript_of(utt), self.max_words)
        return self.template.replace("{text}", text).replace("{speaker}", utt.speaker or "unknown")

    def context_of(self, utt: Utterance) -> str:
        """The last ``context_turns`` earlier turns, one per line, ending in a newline ('' for none)."""
        if self.context_turns == 0 or not utt.context:
            return ""
        return "".join(f"{turn.strip()}\n" for turn in utt.context[-self.context_turns :])


def transcript_of(utt: Utterance) -> str:
    """The utterance's transcript, stripped; a ``TextError`` when there is none."""
    text = (utt.text or "").strip()
    if not text:
        raise TextError(f"{utt.id}: no transcript (text is empty); fill it with `abhinaya transcribe`")
    return text


def cut_words(text: str, max_words: int | None) -> str:
    """``text`` cut to its first ``max_words`` words (whitespace-separated; None: unchanged)."""
    if max_words is None:
        return text
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words])


class TextDataset:
    """Utterances -> ``{"index", "id", "input_ids", "content_start", "label"}`` items, or without a tokenizer
    ``{"index", "id", "text", "label"}`` items.

    ``input_ids`` is a list of token ids: any begin-of-sequence token(s), the
    context (at most ``config.context_tokens``), then the utterance (at most
    ``config.max_tokens``); ``content_start`` is where the utterance's own
    tokens begin (0 without context: everything is pooled); ``label`` the class
    index in ``label_set`` (-1 when unlabelled or without a label set).
    Tokenisation happens once, at construction. ``tokenizer=None``: ``text`` is
    the rendered utterance (context, ``max_tokens`` and special tokens do not
    apply) and ``lengths`` are word counts.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        label_set: LabelSet | None,
        tokenizer=None,
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
                texts.append(self.config.render(utt))
            except TextError as err:
                if on_error == "raise":
                    raise
                self.errors.append(str(err))
                continue
            kept.append(utt)
        self._utterances = kept
        self._texts = texts if tokenizer is None else None
        self._input_ids, self._content_starts = ([], []) if tokenizer is None else self._encode(tokenizer, kept, texts)
        encode = label_set.encode if label_set is not None else None
        self._labels = [encode(u.label) if encode is not None and u.label is not None else -1 for u in kept]

    def _encode(self, tokenizer, utterances: list[Utterance], texts: list[str]) -> tuple[list[list[int]], list[int]]:
        config = self.config
        if not texts:
            return [], []
        if config.context_turns == 0:
            encoded = tokenizer(texts, add_special_tokens=config.add_special_tokens)["input_ids"]
            return [list(ids)[: config.max_tokens] for ids in encoded], [0] * len(texts)
        # With context, the special tokens go first, then the context, then the utterance.
        special = list(tokenizer("", add_special_tokens=True)["input_ids"]) if config.add_special_tokens else []
        own = tokenizer(texts, add_special_tokens=False)["input_ids"]
        contexts = [config.context_of(utt) for utt in utterances]
        before = tokenizer(contexts, add_special_tokens=False)["input_ids"]
        input_ids, starts = [], []
        for ctx, ids in zip(before, own):
            ctx = list(ctx)[len(ctx) - config.context_tokens :] if config.context_tokens else []
            input_ids.append(special + ctx + list(ids)[: config.max_tokens])
            starts.append(len(special) + len(ctx))
        return input_ids, starts

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
    def tokenized(self) -> bool:
        return self._texts is None

    @property
    def texts(self) -> list[str]:
        """The rendered utterances (raw-text datasets only)."""
        if self._texts is None:
            raise AttributeError("a tokenized TextDataset keeps token ids, not texts")
        return list(self._texts)

    @property
    def lengths(self) -> list[int]:
        """Tokens per utterance, or words for raw text (for length bucketing)."""
        if self._texts is not None:
            return [len(text.split()) for text in self._texts]
        return [len(ids) for ids in self._input_ids]

    def set_epoch(self, epoch: int) -> None:
        """Text items do not change between epochs (kept for the training loop's interface)."""

    def __len__(self) -> int:
        return len(self._utterances)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self._texts is not None:
            utt = self._utterances[index]
            return {"index": index, "id": utt.id, "text": self._texts[index], "label": self._labels[index]}
        return {
            "index": index,
            "id": self._utterances[index].id,
            "input_ids": self._input_ids[index],
            "content_start": self._content_starts[index],
            "label": self._labels[index],
        }


def pad_token_ids(
    rows: Sequence[Sequence[int]], pad_id: int, *, width: int | None = None, side: Literal["right", "left"] = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> ``ids`` ``(N, T)`` long filled with ``pad_id`` and ``mask`` ``(N, T)`` long, 1 on real tokens.

    ``T`` is ``width`` or the longest row (at least 1); ``side="left"`` puts the padding first, so that every row
    ends at the same position (generation)."""
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    width = width if width is not None else max([1, *(len(row) for row in rows)])
    ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row)
        if n > width:
            raise ValueError(f"row {i} has {n} tokens, more than the width {width}")
        if n == 0:
            continue
        span = slice(0, n) if side == "right" else slice(width - n, width)
        ids[i, span] = torch.as_tensor(list(row), dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def collate_text(items: Sequence[dict], pad_id: int | None = None) -> dict[str, Any]:
    """``TextDataset`` items -> a batch.

    Every batch has ``labels`` (B,) long (-1 = unlabelled), ``index`` (B,) long and ``ids`` (list of B strings).
    Raw-text items add ``texts`` (list of B strings). Token items are right-padded with ``pad_id``: ``input_ids``
    (B, T) long; ``attention_mask`` (B, T) long, 1 on real tokens; ``pool_mask`` (B, T) bool, true on the
    utterance's own tokens (the real tokens after ``content_start``; items without that key pool every real token);
    ``lengths`` (B,) long.
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    batch: dict[str, Any] = {}
    if "input_ids" in items[0]:
        if pad_id is None:
            raise ValueError("collating token ids needs the tokenizer's pad_id")
        rows = [item["input_ids"] for item in items]
        input_ids, attention_mask = pad_token_ids(rows, pad_id)
        pool_mask = attention_mask.bool()
        for row, item in enumerate(items):
            pool_mask[row, : int(item.get("content_start", 0))] = False
        batch.update(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pool_mask=pool_mask,
            lengths=torch.tensor([len(r) for r in rows], dtype=torch.long),
        )
    else:
        batch["texts"] = [str(item["text"]) for item in items]
    batch.update(
        labels=torch.tensor([int(item["label"]) for item in items], dtype=torch.long),
        index=torch.tensor([int(item["index"]) for item in items], dtype=torch.long),
        ids=[str(item["id"]) for item in items],
    )
    return batch


__all__ = ["TextConfig", "TextDataset", "TextError", "collate_text", "cut_words", "pad_token_ids", "transcript_of"]
