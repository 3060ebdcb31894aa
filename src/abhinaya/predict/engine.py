"""The prediction engine that dev scoring during training and ``abhinaya predict`` share.

A member turns a collated batch into logits (``member.logits``) or, where it has one, into its pooled vector
(``member.embed``) and the pooled vector into logits (``member.classify``). This module runs those over a dataset in
length-bucketed batches, one row per utterance in dataset order (gathered across processes when training runs on
several), and applies per-speaker normalisation between ``embed`` and ``classify`` where ``predict.speaker_norm``
asks for it, toward a reference mean the caller names.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from abhinaya.data.audio import LengthBucketSampler
from abhinaya.members.base import Member
from abhinaya.predict.speaker_norm import speaker_shift
from abhinaya.recipes import PredictConfig


def predict_probabilities(member: Member, model: torch.nn.Module, dataset, batch_size: int,
                          **options) -> tuple[list[str], np.ndarray]:
    """``(ids, probabilities)`` of ``predict_with_dimensions`` (same options)."""
    predicted = predict_with_dimensions(member, model, dataset, batch_size, **options)
    return predicted.ids, predicted.probs


@dataclass
class Predicted:
    """What ``predict_with_dimensions`` gives: probabilities ``(N, C)`` and, for a member with a dimension head,
    its dimensions ``(N, K)`` (``member.dimension_names()`` order), one row per utterance in dataset order."""

    ids: list[str]
    probs: np.ndarray
    dimensions: np.ndarray | None = None


def predict_with_dimensions(
    member: Member,
    model: torch.nn.Module,
    dataset,
    batch_size: int,
    *,
    accelerator=None,
    progress: bool = True,
    desc: str = "predict",
    predict: PredictConfig | None = None,
    reference: torch.Tensor | None = None,
) -> Predicted:
    """Softmax probabilities ``(N, C)`` for every utterance of ``dataset``, in dataset order, and for a member with
    a dimension head its dimensions, from the same pass over the audio. Batches are formed by length (little
    padding). With several processes each takes every n-th batch and the results are gathered, so the output holds
    exactly one row per utterance on every process.

    With ``predict.speaker_norm`` or a dimension head the pooled vectors are gathered first: the class head takes
    them, each speaker's moved to ``reference`` (``(D,)``, required then; see ``classify_pooled``) where
    ``predict.speaker_norm`` says, and the dimension head takes them as they are, as in training."""
    config = predict if predict is not None else PredictConfig()
    with_dimensions = bool(member.dimension_names())
    if not (config.speaker_norm or with_dimensions):
        ids, logits = gather_rows(member, "logits", model, dataset, batch_size, accelerator, progress, desc)
        return Predicted(ids, softmax(logits))
    ids, pooled = gather_rows(member, "embed", model, dataset, batch_size, accelerator, progress, desc)
    probs = classify_pooled(member, model, pooled, speakers_of(dataset, config), config, reference)
    return Predicted(ids, probs, dimensions_of_pooled(member, model, pooled) if with_dimensions else None)


def dimensions_of_pooled(member: Member, model: torch.nn.Module, pooled: np.ndarray) -> np.ndarray:
    """The dimension head's ``(N, K)`` outputs for pooled vectors ``(N, D)`` from ``predict_pooled``."""
    if not len(pooled):
        return np.zeros((0, len(member.dimension_names())), dtype=np.float32)
    device = next(iter(model.parameters())).device
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        values = member.dimensions_of_pooled(model, torch.from_numpy(pooled).to(device, torch.float32))
    model.train(was_training)
    return values.float().cpu().numpy()


def speakers_of(dataset, predict: PredictConfig) -> list[str | None]:
    """The speaker of each utterance of ``dataset`` as grouped for normalisation (none with ``speaker_from: none``)."""
    if predict.speaker_from == "none":
        return [None] * len(dataset)
    return [u.speaker for u in dataset.utterances]


def predict_pooled(
    member: Member,
    model: torch.nn.Module,
    dataset,
    batch_size: int,
    *,
    accelerator=None,
    progress: bool = True,
    desc: str = "embed",
) -> tuple[list[str], np.ndarray]:
    """The pooled vectors ``(N, D)`` of a member that has them (``member.embed``), in dataset order (gathered over
    processes with ``accelerator``)."""
    return gather_rows(member, "embed", model, dataset, batch_size, accelerator, progress, desc)


def classify_pooled(
    member: Member,
    model: torch.nn.Module,
    pooled: np.ndarray,
    speakers: Sequence[str | None],
    predict: PredictConfig,
    reference: torch.Tensor | None,
) -> np.ndarray:
    """Softmax probabilities of pooled vectors ``(N, D)`` from ``predict_pooled``. With ``predict.speaker_norm`` each
    speaker's vectors are first moved toward ``reference`` ``(D,)`` (speaker_norm.py): the run's reference mean at
    prediction (``LoadedRun.reference_mean``), the head's running mean while training selects its epoch. Rows
    without a speaker are classified as they are."""
    if not len(pooled):
        return np.zeros((0, 0))
    x = torch.from_numpy(pooled)
    if predict.speaker_norm:
        if reference is None:
            raise ValueError("predict.speaker_norm needs a reference mean to move the speakers to")
        x = speaker_shift(x, list(speakers), reference.detach().float().cpu(), predict.speaker_norm_prior)
    device = next(iter(model.parameters())).device  # members with a pooled vector have weights
    was_training = model.training
    model.eval()
    with torch.inference_mode():  # pooled vectors are float32, as the heads that take them
        logits = member.classify(model, x.to(device, torch.float32))
    model.train(was_training)
    return softmax(logits.float().cpu().numpy())


def softmax(logits: np.ndarray) -> np.ndarray:
    if not len(logits):
        return logits
    return torch.softmax(torch.from_numpy(logits).float(), dim=-1).numpy()


def gather_rows(
    member: Member,
    method: str,
    model: torch.nn.Module,
    dataset,
    batch_size: int,
    accelerator,
    progress: bool,
    desc: str,
) -> tuple[list[str], np.ndarray]:
    """``member.<method>(model, batch)`` (``logits`` or ``embed``) for every utterance, one row each in dataset
    order."""
    fn = getattr(member, method)
    world = accelerator.num_processes if accelerator is not None else 1
    rank = accelerator.process_index if accelerator is not None else 0
    if accelerator is not None:
        device = accelerator.device
    else:  # a model without parameters (e.g. a client of a remote LLM) runs on the CPU side
        device = next(iter(model.parameters()), torch.empty(0)).device
    batches = list(LengthBucketSampler(dataset.lengths, batch_size, shuffle=False))
    mine = batches[rank::world]
    rows: list[tuple[int, np.ndarray]] = []
    was_training = model.training
    model.eval()
    show = progress and rank == 0
    with torch.inference_mode():
        for indices in tqdm(mine, desc=desc, disable=None if show else True, leave=False, unit="batch"):
            batch = member.collate([dataset[i] for i in indices])
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            with accelerator.autocast() if accelerator is not None else contextlib.nullcontext():
                out = fn(model, batch)
            rows += list(zip(batch["index"].tolist(), out.float().cpu().numpy()))
    model.train(was_training)
    if world > 1:
        from accelerate.utils import gather_object

        rows = gather_object(rows)
    by_index = {int(i): p for i, p in rows}
    if len(by_index) != len(dataset):
        raise RuntimeError(f"gathered {len(by_index)} predictions for {len(dataset)} utterances")
    ids = [u.id for u in dataset.utterances]
    if not len(dataset):
        return ids, np.zeros((0, 0))
    return ids, np.stack([by_index[i] for i in range(len(dataset))])
