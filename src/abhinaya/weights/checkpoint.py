"""Checkpoints as safetensors (no pickle), written atomically.

``save_tensors`` writes to a temporary file in the same folder and renames it,
so an interrupted write never leaves a half-written checkpoint behind. The
optimizer state (a nested dict of tensors and numbers) is flattened into
tensors plus a JSON description stored in the safetensors metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from abhinaya.nn.head import PooledClassifierHead, RenamedStateKeys


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # safetensors refuses shared storage and non-contiguous views: store copies.
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    save_file(plain, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None


def load_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def trainable_state_dict(model: torch.nn.Module, only_trainable: bool = False) -> dict[str, torch.Tensor]:
    """The model's state dict; with ``only_trainable`` only parameters that
    require gradients plus all buffers (for members whose frozen part is
    rebuilt from pretrained weights)."""
    state = model.state_dict()
    if not only_trainable:
        return state
    keep = {name for name, p in model.named_parameters() if p.requires_grad}
    keep |= {name for name, _ in model.named_buffers()}
    return {k: v for k, v in state.items() if k in keep}


def trained_state_keys(model: torch.nn.Module) -> set[str]:
    """State-dict keys of what training changes: every parameter with ``requires_grad`` and every entry of a
    :class:`~abhinaya.nn.head.PooledClassifierHead` (its norm's running statistics are learnt from the data)."""
    keys = {name for name, p in model.named_parameters() if p.requires_grad}
    for prefix, module in model.named_modules():
        if isinstance(module, PooledClassifierHead):
            keys |= {f"{prefix}.{k}" if prefix else k for k in module.state_dict()}
    return keys


def load_model_weights(model: torch.nn.Module, path: str | Path, *, partial: bool = False) -> None:
    """Load weights strictly: every key of the file must be a key of the model, and every model key must be in the
    file. With ``partial`` (members that save only what they train) the frozen pretrained keys may be absent, but
    every trained key (:func:`trained_state_keys`) must be present. A mismatch is an error listing the keys. Keys of
    an earlier layout are renamed first where the model says how (:class:`~abhinaya.nn.head.RenamedStateKeys`)."""
    state = load_tensors(path)
    if isinstance(model, RenamedStateKeys):
        state = model.upgrade_state_dict(state)
    expected = model.state_dict()
    required = trained_state_keys(model) & set(expected) if partial else set(expected)
    check_state_fits(state, expected, required, path)
    model.load_state_dict(state, strict=not partial)


def check_state_fits(
    state: dict[str, torch.Tensor],
    expected: dict[str, torch.Tensor],
    required: set[str],
    source: str | Path,
    error: type[Exception] = CheckpointError,
) -> None:
    """Raise ``error`` naming ``source`` and the keys when ``state`` holds a key that ``expected`` lacks, lacks one of
    the ``required`` keys, or holds a tensor whose shape differs from the expected one."""
    unexpected = sorted(set(state) - set(expected))
    missing = sorted(required - set(state))
    if unexpected or missing:
        raise error(
            f"{source}: does not fit the model: "
            + (f"unexpected keys {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''} " if unexpected else "")
            + (f"missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''}" if missing else "")
        )
    shapes = [k for k, v in state.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if shapes:
        raise error(f"{source}: shape mismatch for {shapes[:10]}")


def _flatten(prefix: str, value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[prefix] = value
        return {"__tensor__": prefix}
    if isinstance(value, dict):
        return {str(k): _flatten(f"{prefix}.{k}", v, tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_flatten(f"{prefix}.{i}", v, tensors) for i, v in enumerate(value)]
    return value


def _unflatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            return tensors[value["__tensor__"]]
        return {k: _unflatten(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_unflatten(v, tensors) for v in value]
    return value


def save_nested_state(path: str | Path, state: dict) -> Path:
    """Save a nested dict of tensors / numbers / strings (optimizer, scheduler,
    RNG states) as safetensors + JSON structure in the metadata."""
    tensors: dict[str, torch.Tensor] = {}
    structure = _flatten("s", state, tensors)
    return save_tensors(path, tensors, metadata={"structure": json.dumps(structure)})


def load_nested_state(path: str | Path) -> dict:
    tensors = load_tensors(path)
    structure = json.loads(load_metadata(path)["structure"])
    state = _unflatten(structure, tensors)
    # Optimizer state dicts are keyed by integer parameter ids.
    if isinstance(state, dict) and isinstance(state.get("optimizer", {}).get("state"), dict):
        state["optimizer"]["state"] = {int(k): v for k, v in state["optimizer"]["state"].items()}
    return state
