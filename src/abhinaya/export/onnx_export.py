"""``abhinaya export onnx``: an S1 run folder -> an ONNX graph from raw audio, checked against PyTorch before it is
written.

What is written (``OUTPUT`` = ``model.onnx``):

- ``model.onnx``: waveforms ``(batch, samples)`` float32 at 16 kHz, zero-padded on the right, and lengths ``(batch,)``
  int64 in samples -> ``logits`` ``(batch, classes)`` and ``embedding`` ``(batch, P)``, the pooled vector before the
  head. Batch and length are dynamic. The whole model is in the graph, the acoustic front end included (Whisper's
  log-mel spectrogram, or the wav2vec2-style waveform normalisation); see ``graphs.py``.
- ``model.head.onnx``: ``embedding`` -> ``logits``, so per-speaker normalisation can shift the embeddings between the
  two (``classify(embedding - shift)``).
- ``model.onnx.json``: the sidecar (labels, sample rate, front-end settings, the run's recipe and reference mean,
  opset, exporter, tolerance, and the differences measured at export).

Before anything is written, onnxruntime and PyTorch run the same inputs: three synthetic utterances of different
lengths (and any audio files given) one at a time and together in one zero-padded batch. The export is refused when
the largest absolute difference of a logit exceeds the tolerance (default 1e-3), unless ``force`` is set, which
writes it with a warning.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from abhinaya.export.graphs import HeadGraph, s1_graph
from abhinaya.export.onnx_model import (
    SIDECAR_FORMAT,
    SIDECAR_VERSION,
    OnnxModelError,
    ort_session,
    head_path,
    sidecar_path,
)
from abhinaya.recipes import to_dict
from abhinaya.runs import LoadedRun, load_run, load_run_recipe

__all__ = ["DEFAULT_TOLERANCE", "EXPORTERS", "ExportReport", "OnnxExportError", "check_inputs", "export_onnx"]

DEFAULT_TOLERANCE = 1e-3
EXPORTERS = ("auto", "dynamo", "torchscript")
DEFAULT_OPSET = {"dynamo": 18, "torchscript": 17}
# Lengths (samples at 16 kHz) of the synthetic check utterances: not multiples of the hop, one under 0.5 s.
CHECK_LENGTHS = (5_923, 19_687, 49_141)


class OnnxExportError(OnnxModelError):
    """A run folder that cannot be exported, or an export whose outputs differ from PyTorch's beyond the tolerance."""


@dataclass
class ExportReport:
    """What ``export_onnx`` wrote and measured."""

    path: Path
    head_path: Path
    sidecar_path: Path
    exporter: str
    opset: int
    tolerance: float
    checks: list[dict] = field(default_factory=list)
    max_abs_logit_diff: float = 0.0
    max_abs_embedding_diff: float = 0.0
    max_abs_head_diff: float = 0.0
    within_tolerance: bool = True
    seconds: float = 0.0


def synthetic_utterance(samples: int, seed: int, sample_rate: int = 16000) -> np.ndarray:
    """A deterministic speech-like test signal: a gliding harmonic tone with syllable-rate amplitude modulation and
    a little noise, peak about 0.3."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / sample_rate
    f0 = rng.uniform(100, 250) * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(3, 6) * t))
    wave = 0.1 * voice * envelope + 0.01 * rng.standard_normal(samples)
    return wave.astype(np.float32)


def pad_batch(waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded (B, S) float32 waveforms and (B,) int64 lengths."""
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
    batch = torch.zeros(len(waves), int(lengths.max()), dtype=torch.float32)
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.as_tensor(w, dtype=torch.float32)
    return batch, lengths


def check_inputs(
    run: LoadedRun, audio: Sequence[str | Path] = (), lengths: Sequence[int] = CHECK_LENGTHS
) -> list[tuple[str, np.ndarray]]:
    """The utterances an export is checked on: synthetic ones of ``lengths`` samples, then ``audio`` files prepared
    as prediction prepares them (resampled, cut to ``max_eval_seconds``, normalised where the recipe says so)."""
    items = [(f"synthetic-{n}", synthetic_utterance(n, seed=i)) for i, n in enumerate(lengths)]
    if audio:
        from abhinaya.manifest import Utterance

        utterances = [Utterance(id=f"{i}:{Path(p).name}", audio=str(p)) for i, p in enumerate(audio)]
        dataset = run.member.dataset(utterances, None, train=False, on_error="raise")
        for i in range(len(dataset)):
            item = dataset[i]
            items.append((str(item["id"]).split(":", 1)[1], item["waveform"].numpy().astype(np.float32)))
    return items


def _example_inputs(sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Two utterances of different lengths, so the traced graph pads and masks.
    return pad_batch([synthetic_utterance(sample_rate, seed=11), synthetic_utterance(int(0.6 * sample_rate), seed=12)])


def _export_graph(module, args, path: Path, inputs, outputs, dynamic: dict[str, dict[int, str]], exporter: str,
                  opset: int) -> None:
    with warnings.catch_warnings():
        # The TorchScript tracer warns about every shape check of the library code it passes through; the checks
        # after the export are what tells whether the graph is right.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*[Cc]onstant folding.*")
        warnings.filterwarnings("ignore", message=".*axis name.*")
        # The dynamo exporter logs a warning for each torchvision operator it cannot register.
        registration = logging.getLogger("torch.onnx._internal.exporter._registration")
        level = registration.level
        registration.setLevel(logging.ERROR)
        try:
            _export_quietly(module, args, path, inputs, outputs, dynamic, exporter, opset)
        finally:
            registration.setLevel(level)


def _export_quietly(module, args, path: Path, inputs, outputs, dynamic: dict[str, dict[int, str]], exporter: str,
                    opset: int) -> None:
    if exporter == "dynamo":
        # min=2: torch.export specialises dimensions of size 0 or 1; the graph is checked at batch 1 afterwards.
        dims: dict[str, torch.export.Dim] = {}
        shapes = tuple(
            {axis: dims.setdefault(label, torch.export.Dim(label, min=2)) for axis, label in dynamic[name].items()}
            for name in inputs
        )
        torch.onnx.export(
            module, args, str(path), dynamo=True, input_names=list(inputs), output_names=list(outputs),
            dynamic_shapes=shapes, opset_version=opset, external_data=False, verbose=False,
        )
    else:
        torch.onnx.export(
            module, args, str(path), dynamo=False, input_names=list(inputs), output_names=list(outputs),
            dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True,
        )


def _front_end(run: LoadedRun) -> dict:
    model = run.model
    cfg = model.config
    if model.is_whisper:
        mel = model.log_mel
        return {
            "kind": "whisper_log_mel",
            "in_graph": True,
            "n_fft": int(mel.n_fft),
            "hop_length": int(mel.hop_length),
            "n_mels": int(mel.n_mels),
            "window": "hann",
            "mel_filters": "slaney, 0-8000 Hz",
            "log": "log10(max(power, 1e-10)), clamped below at the utterance's maximum - 8, then (x + 4) / 4",
            "frames": "max(length // hop_length, 1) per utterance",
            "max_frames": int(model.max_mel_frames),
            "max_seconds": model.max_mel_frames * mel.hop_length / cfg.sample_rate,
            "long_input": cfg.long_input,
        }
    lengths = model.encoder._get_feat_extract_output_lengths(torch.arange(1, 20 * cfg.sample_rate))
    min_samples = int(torch.nonzero(lengths >= 1)[0, 0]) + 1
    hf = model.encoder.config
    return {
        "kind": "waveform",
        "in_graph": True,
        "normalize_waveform": bool(cfg.normalize_waveform),
        "conv_kernel": list(hf.conv_kernel),
        "conv_stride": list(hf.conv_stride),
        "min_samples": min_samples,
        "padding_invariant": getattr(hf, "feat_extract_norm", "layer") == "layer",
    }


def _compare(run: LoadedRun, session, head_session, items: list[tuple[str, np.ndarray]]) -> list[dict]:
    """Each utterance alone, then all of them in one padded batch: PyTorch vs onnxruntime."""
    model = run.model
    groups = [[i] for i in range(len(items))] + [list(range(len(items)))]
    checks = []
    for group in groups:
        waves, lengths = pad_batch([items[i][1] for i in group])
        with torch.inference_mode():
            pooled = model.embed(waves, lengths)
            logits = model.classify(pooled)
        onnx_logits, onnx_pooled = session.run(
            ["logits", "embedding"], {"waveforms": waves.numpy(), "lengths": lengths.numpy()}
        )
        (head_logits,) = head_session.run(["logits"], {"embedding": pooled.numpy()})
        checks.append({
            "utterances": [items[i][0] for i in group],
            "batch": len(group),
            "samples": lengths.tolist(),
            "max_abs_logit_diff": float(np.abs(onnx_logits - logits.numpy()).max()),
            "max_abs_embedding_diff": float(np.abs(onnx_pooled - pooled.numpy()).max()),
            "max_abs_head_diff": float(np.abs(head_logits - logits.numpy()).max()),
            "max_abs_logit": float(np.abs(logits.numpy()).max()),
        })
    return checks


def export_onnx(
    run_dir: str | Path,
    output: str | Path,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    check_audio: Sequence[str | Path] = (),
    check_lengths: Sequence[int] = CHECK_LENGTHS,
    exporter: str = "auto",
    opset: int | None = None,
    force: bool = False,
    report: Callable[[str], None] = print,
) -> ExportReport:
    """Export the S1 run in ``run_dir`` to ``output`` (``.onnx``), its head and its sidecar beside it.

    Args:
        tolerance: largest allowed absolute difference between onnxruntime's and PyTorch's logits.
        check_audio: audio files to check on, in addition to the synthetic utterances.
        check_lengths: lengths in samples of the synthetic check utterances (default about 0.4, 1.2 and 3.1 s).
        exporter: "dynamo" (``torch.onnx.export(dynamo=True)``), "torchscript" (``dynamo=False``) or "auto" (dynamo
            for the Whisper encoder, TorchScript for the wav2vec2 family, whose transformers code the dynamo
            exporter cannot trace; TorchScript also when the dynamo export fails).
        opset: ONNX opset (default 18 with dynamo, 17 with TorchScript).
        force: write the files even when a difference exceeds the tolerance (with a warning).

    Raises ``OnnxExportError`` for a run folder that is not S1 and for differences beyond the tolerance.
    """
    started = time.perf_counter()
    run_dir, output = Path(run_dir), Path(output)
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if not (tolerance > 0 and math.isfinite(tolerance)):
        raise ValueError(f"tolerance must be a positive number, got {tolerance}")
    if output.suffix.lower() != ".onnx":
        raise ValueError(f"{output}: the output must be a .onnx file")
    recipe = load_run_recipe(run_dir)
    if recipe.member != "s1":
        raise OnnxExportError(
            f"{run_dir}: ONNX export supports member s1 (speech encoder + pooling + head); this run is member "
            f"{recipe.member!r}"
        )
    try:
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise ImportError(f"ONNX export needs onnx and onnxruntime: pip install 'abhinaya[onnx]' ({err})") from None

    run = load_run(run_dir, device="cpu")
    model = run.model.eval()
    graph, head = s1_graph(model).eval(), HeadGraph(model).eval()
    requested = exporter
    if exporter == "auto":
        exporter = "dynamo" if model.is_whisper else "torchscript"
    sample_rate = int(model.config.sample_rate)
    example = _example_inputs(sample_rate)
    main_io = (("waveforms", "lengths"), ("logits", "embedding"))
    main_axes = {"waveforms": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}, "logits": {0: "batch"},
                 "embedding": {0: "batch"}}
    head_axes = {"embedding": {0: "batch"}, "logits": {0: "batch"}}
    with torch.inference_mode():
        pooled_example = model.embed(*example)

    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.") as tmp:
        tmp_main, tmp_head = Path(tmp) / "model.onnx", Path(tmp) / "model.head.onnx"

        def export_both(used: str) -> None:
            _export_graph(graph, example, tmp_main, *main_io, main_axes, used, opset or DEFAULT_OPSET[used])
            _export_graph(head, (pooled_example.clone(),), tmp_head, ("embedding",), ("logits",), head_axes, used,
                          opset or DEFAULT_OPSET[used])

        used = exporter
        try:
            export_both(used)
        except Exception as err:  # the exporters raise many kinds of error
            if requested != "auto" or used != "dynamo":
                raise OnnxExportError(f"{run_dir}: the {used} ONNX exporter failed: {err}") from err
            report(f"note: the dynamo exporter failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                   "using the TorchScript exporter")
            used = "torchscript"
            export_both(used)
        used_opset = opset or DEFAULT_OPSET[used]

        checks = _compare(run, ort_session(tmp_main, None, None), ort_session(tmp_head, None, None),
                          check_inputs(run, check_audio, check_lengths))
        result = ExportReport(
            path=output, head_path=head_path(output), sidecar_path=sidecar_path(output), exporter=used,
            opset=used_opset, tolerance=float(tolerance), checks=checks,
            max_abs_logit_diff=max(c["max_abs_logit_diff"] for c in checks),
            max_abs_embedding_diff=max(c["max_abs_embedding_diff"] for c in checks),
            max_abs_head_diff=max(c["max_abs_head_diff"] for c in checks),
        )
        worst = max(result.max_abs_logit_diff, result.max_abs_head_diff)
        result.within_tolerance = bool(worst <= tolerance)
        if not result.within_tolerance:
            message = (f"onnxruntime's logits differ from PyTorch's by up to {worst:.3g}, over the tolerance "
                       f"{tolerance:g} (checks: " + "; ".join(
                           f"{c['samples']}: {c['max_abs_logit_diff']:.3g}" for c in checks) + ")")
            if not force:
                raise OnnxExportError(f"{run_dir}: {message}; nothing written (--force writes it anyway)")
            report(f"WARNING: {message}; written anyway (--force)")

        sidecar = {
            "format": SIDECAR_FORMAT,
            "version": SIDECAR_VERSION,
            "member": recipe.member,
            "encoder_type": model.encoder_type,
            "labels": list(run.label_set),
            "sample_rate": sample_rate,
            "inputs": {
                "waveforms": "float32 (batch, samples): mono audio at sample_rate, zero-padded on the right",
                "lengths": "int64 (batch,): valid samples of each row, 1..samples",
            },
            "outputs": {
                "logits": "float32 (batch, classes): class scores in the order of labels (softmax for "
                          "probabilities)",
                "embedding": f"float32 (batch, {pooled_example.shape[1]}): pooled vector before the head; "
                             "head graph: logits = head(embedding)",
            },
            "head": result.head_path.name,
            "front_end": _front_end(run),
            "audio": to_dict(recipe.audio),
            "reference_mean": None if run.reference_mean is None else run.reference_mean.float().tolist(),
            "pooled_mean": None if model.pooled_mean() is None else model.pooled_mean().float().tolist(),
            "predict": to_dict(recipe.predict),
            "opset": used_opset,
            "exporter": used,
            "tolerance": float(tolerance),
            "validation": {
                "max_abs_logit_diff": result.max_abs_logit_diff,
                "max_abs_embedding_diff": result.max_abs_embedding_diff,
                "max_abs_head_diff": result.max_abs_head_diff,
                "within_tolerance": result.within_tolerance,
                "checks": checks,
            },
            "source_run": str(run_dir.resolve()),
            "torch_version": torch.__version__,
            "onnxruntime_version": onnxruntime.__version__,
            "recipe": to_dict(recipe),
        }
        os.replace(tmp_main, output)
        os.replace(tmp_head, result.head_path)
        tmp_side = Path(tmp) / "sidecar.json"
        tmp_side.write_text(json.dumps(sidecar, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp_side, result.sidecar_path)
    result.seconds = time.perf_counter() - started
    return result
