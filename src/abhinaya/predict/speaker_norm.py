"""Per-speaker normalisation of pooled vectors at prediction time (``predict.speaker_norm``).

A member's pooled vector mixes what the speaker always sounds like with what this utterance expresses. Moving each
speaker's vectors so that their mean is the training mean removes the first part for a speaker the model has never
heard. Only unlabelled audio of that speaker is used. The mean is shrunk toward the training mean by a pseudo-count
(``prior``), so a speaker with few utterances moves little.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch

__all__ = ["speaker_shift", "speaker_counts"]


def speaker_counts(speakers: Sequence[str | None]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for speaker in speakers:
        if speaker is not None:
            counts[speaker] += 1
    return dict(counts)


def speaker_shift(
    embeddings: torch.Tensor, speakers: Sequence[str | None], reference: torch.Tensor, prior: float
) -> torch.Tensor:
    """``embeddings`` (N, D) with each speaker's rows moved by ``reference - shrunk_mean``, where
    ``shrunk_mean = (n * speaker_mean + prior * reference) / (n + prior)`` over the speaker's ``n`` rows. Rows whose
    speaker is None are returned unchanged."""
    if embeddings.dim() != 2:
        raise ValueError(f"expected (N, D) embeddings, got {tuple(embeddings.shape)}")
    if len(speakers) != embeddings.shape[0]:
        raise ValueError(f"{len(speakers)} speakers for {embeddings.shape[0]} embeddings")
    if reference.shape != embeddings.shape[1:]:
        raise ValueError(f"reference of shape {tuple(reference.shape)} for embeddings of dimension {embeddings.shape[1]}")
    if prior < 0:
        raise ValueError(f"prior must be >= 0, got {prior}")
    rows: dict[str, list[int]] = defaultdict(list)
    for i, speaker in enumerate(speakers):
        if speaker is not None:
            rows[speaker].append(i)
    x = embeddings.float()
    ref = reference.float().to(x.device)
    out = x.clone()
    for index in rows.values():
        sel = torch.tensor(index, device=x.device)
        n = len(index)
        mean = x[sel].mean(dim=0)
        shrunk = (n * mean + prior * ref) / (n + prior)
        out[sel] = x[sel] - shrunk + ref
    return out.to(embeddings.dtype)
