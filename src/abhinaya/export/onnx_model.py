"""Running an exported S1 ONNX file (``abhinaya export onnx``) with onnxruntime, where a PyTorch S1 model is expected.

An export is three files side by side:

    model.onnx          waveforms (B, S) float32 16 kHz + lengths (B,) int64 -> logits (B, C), embedding (B, P)
    model.head.onnx     embedding (B, P) float32 -> logits (B, C)   (the head, for per-speaker normalisation)
    model.onnx.json     the sidecar: labels, sample rate, front end, the run's recipe and reference mean, opset,
                        tolerance and the differences measured at export

:class:`OnnxS1Model` has the methods of :class:`~abhinaya.models.ssl_classifier.SSLClassifier` that the S1 member and
the prediction engine call (``forward``, ``embed``, ``classify``, ``pooled_mean``, ``config``), so
``S1Member.logits / embed / classify / pooled_mean`` work on it unchanged. :func:`load_onnx_run` wraps it in a
:class:`~abhinaya.runs.LoadedRun` (recipe, member, label set, reference mean from the sidecar), which
``abhinaya.predict.inputs.predict_utterances`` takes as it takes a run folder's.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from abhinaya.labels import LabelSet
from abhinaya.runs import LoadedRun, recipe_from_dict

__all__ = [
    "SIDECAR_FORMAT",
    "OnnxModelError",
    "OnnxS1Model",
    "head_path",
    "is_onnx_model",
    "load_onnx_model",
    "load_onnx_recipe",
    "load_onnx_run",
    "ort_session",
    "read_sidecar",
    "sidecar_path",
]

SIDECAR_FORMAT = "abhinaya-onnx"
SIDECAR_VERSION = 1


class OnnxModelError(ValueError):
    """An ONNX export that is missing a file, has an unreadable sidecar, or is not an abhinaya S1 export."""


def sidecar_path(path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    return Path(str(path) + ".json")


def head_path(path: str | Path) -> Path:
    """``model.onnx`` -> ``model.head.onnx``."""
    path = Path(path)
    return path.with_name(path.stem + ".head" + path.suffix)


def is_onnx_model(path: str | Path) -> bool:
    """Whether ``path`` names an ONNX file (``.onnx``) rather than a run folder."""
    path = Path(path)
    return path.suffix.lower() == ".onnx" and not path.is_dir()


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The sidecar of the ONNX file ``path`` (``OnnxModelError`` when it is missing or not an abhinaya export)."""
    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"{path}: ONNX file not found")
    side = sidecar_path(path)
    if not side.is_file():
        raise OnnxModelError(f"{path}: its sidecar {side.name} is missing (abhinaya export onnx writes both)")
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise OnnxModelError(f"{side}: not a readable JSON sidecar ({err})") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise OnnxModelError(f"{side}: not an abhinaya ONNX sidecar (format {SIDECAR_FORMAT!r} expected)")
    if int(data.get("version", 0)) > SIDECAR_VERSION:
        raise OnnxModelError(f"{side}: sidecar version {data.get('version')} is newer than this abhinaya reads")
    return data


def ort_session(path: str | Path, threads: int | None = None, providers: list[str] | None = None):
    """An onnxruntime session of ``path`` (``threads``: intra-op threads, None = onnxruntime's default)."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError(f"running an ONNX model needs onnxruntime: pip install 'abhinaya[onnx]' ({err})") from None
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])


class OnnxS1Model(nn.Module):
    """An exported S1 model run by onnxruntime, with the interface of ``SSLClassifier`` that prediction uses.

    Args:
        path: the ``.onnx`` file; its sidecar and head file lie beside it.
        threads: onnxruntime intra-op threads (None: onnxruntime's default, one per physical core).
        providers: onnxruntime execution providers (default: CPU).

    Tensors go in and come out on the CPU as float32 (logits, embeddings) whatever the module's ``device``; the
    module holds one empty parameter only so that code which reads a model's device from its parameters works.
    """

    def __init__(self, path: str | Path, *, threads: int | None = None, providers: list[str] | None = None):
        super().__init__()
        self.path = Path(path)
        self.sidecar = read_sidecar(self.path)
        self.label_set = LabelSet(self.sidecar["labels"])
        self.config = load_onnx_recipe(self.path).model  # the SSLClassifierConfig of the run (head_norm, ...)
        self.front_end = dict(self.sidecar["front_end"])
        self._threads = threads
        self._providers = providers
        self.session = ort_session(self.path, threads, providers)
        self._head_session = None
        mean = self.sidecar.get("pooled_mean")
        self._pooled_mean = None if mean is None else torch.tensor(mean, dtype=torch.float32)
        self.register_parameter("device_anchor", nn.Parameter(torch.empty(0), requires_grad=False))

    # ------------------------------------------------------------------ what the S1 member calls

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits (B, C) of waveforms (B, S) at 16 kHz with ``lengths`` (B,) in samples."""
        return self.logits_and_embedding(waveforms, lengths)[0]

    def embed(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled utterance embeddings (B, P) before the head."""
        return self.logits_and_embedding(waveforms, lengths)[1]

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Class logits (B, C) of pooled embeddings (B, P), by the head graph."""
        if self._head_session is None:
            head = self.path.with_name(self.sidecar["head"])
            if not head.is_file():
                raise OnnxModelError(f"{self.path}: the head graph {head.name} is missing")
            self._head_session = ort_session(head, self._threads, self._providers)
        x = pooled.detach().to("cpu", torch.float32).numpy()
        (logits,) = self._head_session.run(["logits"], {"embedding": np.ascontiguousarray(x)})
        return torch.from_numpy(logits)

    def pooled_mean(self) -> torch.Tensor | None:
        """The head's running mean of the training embeddings, as exported, or None (see ``SSLClassifier``)."""
        return self._pooled_mean

    # ------------------------------------------------------------------ running the graph

    def logits_and_embedding(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, C) and pooled embeddings (B, P) in one run of the graph."""
        waves, lens = self._check_inputs(waveforms, lengths)
        logits, embedding = self.session.run(["logits", "embedding"], {"waveforms": waves, "lengths": lens})
        return torch.from_numpy(logits), torch.from_numpy(embedding)

    def _check_inputs(self, waveforms: torch.Tensor, lengths: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
        """The checks of ``SSLClassifier``: shapes, lengths in (0, S], and the encoder's own limits."""
        if waveforms.dim() != 2:
            raise ValueError(f"waveforms must be (B, S), got shape {tuple(waveforms.shape)}")
        width = waveforms.shape[1]
        if lengths is None:
            lens = np.full((waveforms.shape[0],), width, dtype=np.int64)
        else:
            lens = torch.as_tensor(lengths).detach().cpu().long().numpy()
        if lens.shape != (waveforms.shape[0],):
            raise ValueError(f"lengths must be (B,) = ({waveforms.shape[0]},), got {tuple(lens.shape)}")
        if (lens <= 0).any():
            raise ValueError(f"every utterance needs at least one sample; lengths={lens.tolist()}")
        if (lens > width).any():
            raise ValueError(f"lengths exceed the waveform width {width}: {lens.tolist()}")
        front = self.front_end
        rate = int(self.sidecar["sample_rate"])
        if front["kind"] == "whisper_log_mel":
            frames = np.maximum(lens // int(front["hop_length"]), 1)
            if front["long_input"] == "error" and (frames > int(front["max_frames"])).any():
                seconds = lens[frames > int(front["max_frames"])].max() / rate
                limit = int(front["max_frames"]) * int(front["hop_length"]) / rate
                raise ValueError(
                    f"utterance of {seconds:.2f} s exceeds the Whisper encoder's {limit:.0f} s window "
                    f"({front['max_frames']} mel frames); cut long audio into segments, "
                    "or export a model with long_input='crop' to keep the first 30 s"
                )
        elif (lens < int(front["min_samples"])).any():
            raise ValueError(
                f"utterance too short for the encoder's convolutional front end: lengths={lens.tolist()} samples "
                f"(at least {front['min_samples']})"
            )
        waves = waveforms.detach().to("cpu", torch.float32).numpy()
        return np.ascontiguousarray(waves), np.ascontiguousarray(lens.astype(np.int64))

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, labels={list(self.label_set)}"


def load_onnx_model(
    path: str | Path, *, threads: int | None = None, providers: list[str] | None = None
) -> OnnxS1Model:
    """The exported S1 model at ``path`` (a ``.onnx`` file with its sidecar and head file), ready to predict."""
    return OnnxS1Model(path, threads=threads, providers=providers).eval()


def load_onnx_recipe(path: str | Path):
    """The resolved recipe of the run an ONNX file was exported from, read from its sidecar (no model built)."""
    data = read_sidecar(path)
    return recipe_from_dict(data["recipe"], f"{sidecar_path(path)} recipe")


def load_onnx_run(
    path: str | Path, device: str | torch.device | None = None, *, threads: int | None = None
) -> LoadedRun:
    """An ONNX export as a :class:`~abhinaya.runs.LoadedRun`: what ``predict_utterances`` (and a service) take.

    ``device`` is accepted for symmetry with ``load_run`` and ignored: onnxruntime runs on the CPU here.
    ``threads``: onnxruntime intra-op threads (None: as many as PyTorch uses, ``torch.get_num_threads()``).
    """
    from abhinaya.members import get_member

    model = load_onnx_model(path, threads=torch.get_num_threads() if threads is None else threads)
    recipe = load_onnx_recipe(path)
    if getattr(recipe.model, "dimensions", None):  # the graph holds the class head only, not a dimension head
        recipe = replace(recipe, model=replace(recipe.model, dimensions=[]))
    member = get_member(recipe.member)(recipe)
    mean = model.sidecar.get("reference_mean")
    reference = None if mean is None else torch.tensor(mean, dtype=torch.float32)
    return LoadedRun(Path(path), recipe, member, model.label_set, model, reference)
