"""On-disk cache of the outputs of frozen encoders, keyed by audio content and encoder.

A frozen encoder gives the same output for the same samples every epoch, so the speech LLM runs it once per utterance
and reads the result back afterwards. Each entry is one ``.npy`` file, read memory-mapped (only the rows used are
paged in), under ``<root>/<encoder key>/<first two hex digits>/<audio key>.npy``. The audio key is a hash of the
float32 samples, so an entry is found again whatever the file or utterance is called, and a changed file is a new
entry; the encoder key covers the encoder's architecture and a fingerprint of its weights, so a different encoder
never reads another's entries. Writes are atomic (temporary file + rename): an interrupted run leaves no torn entry,
and two processes writing the same entry write the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from abhinaya.weights.cache import model_cache_dir

__all__ = ["EncoderFeatureCache", "audio_key", "default_feature_cache_dir", "encoder_key"]


def default_feature_cache_dir() -> Path:
    """``$ABHINAYA_FEATURE_CACHE`` if set, else ``features/`` next to the model cache."""
    env = os.environ.get("ABHINAYA_FEATURE_CACHE")
    return Path(env) if env else model_cache_dir().parent / "features"


def audio_key(waveform: torch.Tensor) -> str:
    """Hash of the samples of one utterance (S,), as float32."""
    data = waveform.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.sha1(data).hexdigest()


def encoder_key(description: dict[str, Any], modules: list[nn.Module], sample_bytes: int = 4096) -> str:
    """Identity of a frozen encoder: its settings (JSON-serialisable ``description``) and, for each module, the
    names, shapes and first ``sample_bytes`` bytes of every parameter (a fingerprint of the weights that does not
    read all of a large model)."""
    digest = hashlib.sha1(json.dumps(description, sort_keys=True, default=str).encode())
    for module in modules:
        for name, tensor in module.state_dict().items():
            flat = tensor.detach().reshape(-1)
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            count = max(1, sample_bytes // max(1, flat.element_size()))
            digest.update(flat[:count].to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:20]


class EncoderFeatureCache:
    """Arrays per audio key for one encoder (see the module docstring). Counts ``hits`` and ``misses``."""

    def __init__(self, root: str | Path, encoder: str):
        self.root = Path(root).expanduser()
        self.folder = self.root / encoder
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The stored array (memory-mapped, read-only), or None when absent or unreadable (then recomputed)."""
        path = self.path(key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        return array

    def put(self, key: str, array: np.ndarray) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*/*.npy")) if self.folder.is_dir() else 0
