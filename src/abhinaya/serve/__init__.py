"""The HTTP inference service (``abhinaya serve RUN_DIR``): a member run or a whole system run, loaded once,
answering uploaded audio with its emotion class and probabilities (FastAPI + uvicorn; ``pip install
'abhinaya[serve]'``).

- ``settings``: the service's options and their defaults (no web framework needed to import it);
- ``upload``: uploaded bytes -> waveform, in memory, with the checks and refusals (HTTP statuses) of the service;
- ``multipart``: the form body parsed in memory;
- ``predictor``: the loaded run (member or system) and the datasets that feed each member from memory;
- ``batching``: requests that arrive together run through the model together;
- ``app``: the FastAPI application, the uvicorn server, a background server for tests and benchmarks.

See docs/serve.md.
"""

from __future__ import annotations

import importlib

# name -> module; imported on first use, so that ``abhinaya.serve.settings`` loads without FastAPI.
_EXPORTS = {
    "BackgroundServer": "abhinaya.serve.app",
    "create_app": "abhinaya.serve.app",
    "serve": "abhinaya.serve.app",
    "ServeSettings": "abhinaya.serve.settings",
    "ServeError": "abhinaya.serve.predictor",
    "load_service": "abhinaya.serve.predictor",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'abhinaya.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


__all__ = ["BackgroundServer", "ServeError", "ServeSettings", "create_app", "load_service", "serve"]
