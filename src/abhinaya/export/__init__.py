"""Export of trained members to portable formats, and running the exported files.

- ``abhinaya export onnx RUN_DIR -o model.onnx`` (:func:`export_onnx`): an S1 run (Whisper or WavLM / wav2vec2 /
  HuBERT encoder) as an ONNX graph from raw 16 kHz audio, with its head graph and a JSON sidecar; checked against
  PyTorch before it is written (docs/export.md).
- :func:`load_onnx_model` / :func:`load_onnx_run`: the exported file run by onnxruntime where the prediction engine
  expects an S1 model or a loaded run folder.

onnx and onnxruntime are the ``onnx`` extra (``pip install 'abhinaya[onnx]'``); importing this package needs neither.
"""

from abhinaya.export.onnx_export import DEFAULT_TOLERANCE, ExportReport, OnnxExportError, export_onnx
from abhinaya.export.onnx_model import (
    OnnxModelError,
    OnnxS1Model,
    is_onnx_model,
    load_onnx_model,
    load_onnx_recipe,
    load_onnx_run,
    read_sidecar,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "ExportReport",
    "OnnxExportError",
    "OnnxModelError",
    "OnnxS1Model",
    "export_onnx",
    "is_onnx_model",
    "load_onnx_model",
    "load_onnx_recipe",
    "load_onnx_run",
    "read_sidecar",
]
