"""Load the official SALMONN checkpoints into a SALMONN-style speech LLM, every tensor accounted for.

The target model has the attributes ``whisper`` and optional ``beats`` (frozen encoders), ``ln_speech`` and optional
``ln_audio`` (LayerNorms of the two branches), ``qformer`` (:class:`~abhinaya.nn.qformer.WindowQFormer`),
``proj`` (Q-Former width -> LLM width) and ``llm`` (a transformers causal LM with PEFT LoRA injected by
``peft.inject_adapter_in_model``, adapter "default"); anything else (pooling, head) is ours and stays as initialised.

What the official files hold (bytedance/SALMONN: ``model.py`` of the 13B/7B release, ``models/salmonn.py`` and
``runner.py`` of the training code, ``configs/config.yaml``; requirements pin transformers 4.28.0, peft 0.3.0):

* ``salmonn_v1.pth`` (13B: Vicuna-13B v1.1, 40 layers, width 5120) and ``salmonn_7b_v0.pth`` (7B: Vicuna-7B v1.5,
  32 layers, width 4096), both with Whisper-large-v2 (1280) + BEATs (768), are ``torch.save`` of
  ``{"model": state_dict, ...}``. A file written by the training runner also holds "optimizer", "config",
  "scaler" and "epoch" (plain containers, readable with ``weights_only=True``); entries besides "model" are not
  used, and the report lists them. A file that needs real unpickling is refused with an error.
* The runner saves ``model.state_dict()`` minus every name that ``named_parameters()`` reports with
  ``requires_grad=False``. So the file holds the trained tensors, every persistent buffer, and parameters that
  ``named_parameters()`` does not list because they are shared with another name. Keys:

  - ``speech_query_tokens`` (1, 1, 768)
  - ``speech_Qformer.bert.embeddings.LayerNorm.{weight,bias}`` and, per layer N in 0..1,
    ``speech_Qformer.bert.encoder.layer.N.{attention,crossattention}.self.{query,key,value}.{weight,bias}``,
    ``....{attention,crossattention}.output.{dense,LayerNorm}.{weight,bias}``,
    ``....intermediate_query.dense.{weight,bias}``, ``....output_query.{dense,LayerNorm}.{weight,bias}``.
    The BERT-base Q-Former's text-only parts (word/position embeddings, ``intermediate``/``output``, ``cls``)
    are deleted before training, so they are absent.
  - ``speech_Qformer.bert.embeddings.position_ids`` (1, 512): a persistent buffer (arange) that the query-only
    path never reads.
  - ``speech_llama_proj.{weight,bias}``, ``ln_speech.{weight,bias}``, ``ln_audio.{weight,bias}``.
  - ``llama_model.base_model.model.model.layers.N.self_attn.{q,v}_proj.lora_{A,B}.default.weight``:
    ``get_peft_model(LlamaForCausalLM, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.1))`` with no
    ``target_modules``, i.e. PEFT's default for LLaMA, q_proj and v_proj (160 tensors for 13B, 128 for 7B).
  - ``llama_model.base_model.model.model.layers.N.self_attn.rotary_emb.inv_freq`` (64,): persistent in the LLaMA
    code of transformers 4.28 and SALMONN's copy of it; later versions made it non-persistent, so a file may lack
    it. Checked against our LLM's rotary frequencies, never copied.
  - ``beats.encoder.layers.N.self_attn.relative_attention_bias.weight`` for N >= 1: BEATs shares layer 0's
    relative position bias with every layer, ``named_parameters()`` lists the shared tensor once (as layer 0's,
    frozen, so dropped), ``state_dict()`` under every layer, so the copies survive. They are frozen BEATs
    weights: checked against our ``beats`` (which loads BEATs from its own checkpoint), never written.

SALMONN's own loader uses ``load_state_dict(..., strict=False)``; here an official key without a place in our model,
a SALMONN-part tensor of ours without a value, a shape mismatch or a failed buffer check is an error that lists all
offending keys, raised before anything is written.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "SALMONN_LORA_ALPHA",
    "SALMONN_LORA_DROPOUT",
    "SALMONN_LORA_RANK",
    "SALMONN_LORA_TARGET_MODULES",
    "SalmonnCheckpointError",
    "SalmonnLoadReport",
    "load_salmonn_checkpoint",
    "read_salmonn_checkpoint",
    "salmonn_key_to_ours",
]

# LoRA of the official checkpoints (facts about the files, not defaults of ours).
SALMONN_LORA_TARGET_MODULES = ("q_proj", "v_proj")
SALMONN_LORA_RANK = 8
SALMONN_LORA_ALPHA = 32
SALMONN_LORA_DROPOUT = 0.1

# Our modules whose every tensor must come from the checkpoint (plus the LoRA tensors of ``llm``).
SALMONN_PARTS = ("ln_speech", "ln_audio", "qformer", "proj")
# Pretrained parts of ours that the checkpoint does not train.
PRETRAINED_PARTS = ("whisper", "beats", "llm")

_QFORMER = "speech_Qformer.bert."
_LLAMA = "llama_model.base_model.model."
_POSITION_IDS = "speech_Qformer.bert.embeddings.position_ids"

_DIRECT = {
    "speech_query_tokens": "qformer.query_tokens",
    "speech_Qformer.bert.embeddings.LayerNorm.weight": "qformer.input_norm.weight",
    "speech_Qformer.bert.embeddings.LayerNorm.bias": "qformer.input_norm.bias",
    "speech_llama_proj.weight": "proj.weight",
    "speech_llama_proj.bias": "proj.bias",
    "ln_speech.weight": "ln_speech.weight",
    "ln_speech.bias": "ln_speech.bias",
    "ln_audio.weight": "ln_audio.weight",
    "ln_audio.bias": "ln_audio.bias",
}
# Sub-module of a Q-Former layer: SALMONN (BERT) name -> ours.
_QFORMER_LAYER_PARTS = {
    "attention.self.query": "self_attention.query",
    "attention.self.key": "self_attention.key",
    "attention.self.value": "self_attention.value",
    "attention.output.dense": "self_attention.output",
    "attention.output.LayerNorm": "self_attention.norm",
    "crossattention.self.query": "cross_attention.query",
    "crossattention.self.key": "cross_attention.key",
    "crossattention.self.value": "cross_attention.value",
    "crossattention.output.dense": "cross_attention.output",
    "crossattention.output.LayerNorm": "cross_attention.norm",
    "intermediate_query.dense": "feed_forward.up",
    "output_query.dense": "feed_forward.down",
    "output_query.LayerNorm": "feed_forward.norm",
}
_QFORMER_LAYER_KEY = re.compile(r"speech_Qformer\.bert\.encoder\.layer\.(\d+)\.(.+)\.(weight|bias)")
_OUR_QFORMER_LAYER_KEY = re.compile(r"qformer\.layers\.(\d+)\.(.+)\.(weight|bias)")
_LORA_KEY = re.compile(r"model\.layers\.\d+\..+\.lora_[AB]\.default\.weight")
_INV_FREQ_KEY = re.compile(r"llama_model\.base_model\.model\.model\.layers\.(\d+)\.self_attn\.rotary_emb\.inv_freq")
_BEATS_RELATIVE_BIAS = re.compile(r"(beats\.encoder\.layers\.)\d+(\.self_attn\.relative_attention_bias\.weight)")


class SalmonnCheckpointError(ValueError):
    """An official SALMONN checkpoint that does not fit the model; the message lists every offending key."""


@dataclass
class SalmonnLoadReport:
    """What :func:`load_salmonn_checkpoint` did.

    Attributes:
        source: the file (or "<state dict>").
        loaded: (official key, our tensor) for every tensor copied into the model.
        checked: (official key, what it was verified against) for tensors that are checked, never copied:
            buffers our model derives itself and frozen encoder weights.
        ignored_entries: entries of the file besides "model" (optimizer, config, scaler, epoch), not used.
        newly_initialised: our parameters that no checkpoint fills: everything outside SALMONN's parts and the
            pretrained encoders and LLM (pooling, head).
    """

    source: str
    loaded: list[tuple[str, str]] = field(default_factory=list)
    checked: list[tuple[str, str]] = field(default_factory=list)
    ignored_entries: list[str] = field(default_factory=list)
    newly_initialised: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few readable lines: counts per part, checks, ignored entries, parameters left as initialised."""
        groups: dict[str, int] = {}
        for _, ours in self.loaded:
            part = "llm (LoRA)" if ours.startswith("llm.") else ours.split(".", 1)[0]
            groups[part] = groups.get(part, 0) + 1
        lines = [f"SALMONN checkpoint {self.source}: {len(self.loaded)} tensors loaded"]
        lines += [f"  {part}: {count}" for part, count in groups.items()]
        if self.checked:
            lines.append(f"{len(self.checked)} tensors checked, not copied:")
            lines += [f"  {official} == {reference}" for official, reference in self.checked]
        if self.ignored_entries:
            lines.append(f"file entries not used: {', '.join(self.ignored_entries)}")
        if self.newly_initialised:
            names = ", ".join(self.newly_initialised)
            lines.append(f"{len(self.newly_initialised)} parameters left as initialised: {names}")
        return "\n".join(lines)


def salmonn_key_to_ours(key: str) -> str | None:
    """Our tensor name for an official SALMONN state-dict key.

    Returns None for buffers our model derives itself (the Q-Former's ``position_ids``, LLaMA's rotary
    ``inv_freq``), which the loader checks instead of copying.

    Raises:
        KeyError: for a key that SALMONN checkpoints do not hold.
    """
    if key in _DIRECT:
        return _DIRECT[key]
    if key == _POSITION_IDS or _INV_FREQ_KEY.fullmatch(key):
        return None
    match = _QFORMER_LAYER_KEY.fullmatch(key)
    if match and match.group(2) in _QFORMER_LAYER_PARTS:
        layer, part, leaf = match.groups()
        return f"qformer.layers.{layer}.{_QFORMER_LAYER_PARTS[part]}.{leaf}"
    if key.startswith(_LLAMA) and _LORA_KEY.fullmatch(key[len(_LLAMA):]):
        return "llm." + key[len(_LLAMA):]
    if _BEATS_RELATIVE_BIAS.fullmatch(key):
        return key
    raise KeyError(f"no mapping for SALMONN checkpoint key {key!r}")


def _ours_to_salmonn(name: str) -> str | None:
    """The official key that fills our tensor ``name`` (None when there is none); for error messages."""
    for official, ours in _DIRECT.items():
        if ours == name:
            return official
    match = _OUR_QFORMER_LAYER_KEY.fullmatch(name)
    if match:
        layer, part, leaf = match.groups()
        for official_part, our_part in _QFORMER_LAYER_PARTS.items():
            if our_part == part:
                return f"{_QFORMER}encoder.layer.{layer}.{official_part}.{leaf}"
    if name.startswith("llm.") and _LORA_KEY.fullmatch(name[len("llm."):]):
        return _LLAMA + name[len("llm."):]
    return None


def read_salmonn_checkpoint(
    source: str | Path | Mapping[str, object],
) -> tuple[dict[str, torch.Tensor], list[str], str]:
    """The state dict of an official checkpoint, the names of the file's other entries, and a source label.

    ``source`` is a ``.pth`` file as SALMONN saves it (``{"model": state_dict, ...}``, read with
    ``torch.load(weights_only=True)``: no code is unpickled), a ``.safetensors`` file of the state dict, or an
    in-memory dict of either form.
    """
    if isinstance(source, Mapping):
        label, obj = "<state dict>", source
    else:
        path = Path(source).expanduser()
        label = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"SALMONN checkpoint not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path))
        else:
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as error:
                raise SalmonnCheckpointError(
                    f"{path}: holds objects other than tensors and plain containers; they are not unpickled "
                    f"(torch.load weights_only=True). Official SALMONN files load this way. Cause: {error}"
                ) from error
        if not isinstance(obj, Mapping):
            raise SalmonnCheckpointError(f"{path}: expected a dict, got {type(obj).__name__}")
    ignored: list[str] = []
    if isinstance(obj.get("model"), Mapping):
        ignored = sorted(str(k) for k in obj if k != "model")
        obj = obj["model"]
    not_tensors = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise SalmonnCheckpointError(f"{label}: state-dict entries that are not tensors: {', '.join(not_tensors)}")
    return {str(k): v for k, v in obj.items()}, ignored, label


def _tolerance(*dtypes: torch.dtype) -> float:
    """Relative tolerance for comparing values stored in the least precise of ``dtypes``."""
    eps = max(torch.finfo(d).eps if d.is_floating_point else 0.0 for d in dtypes)
    return max(2 * eps, 1e-6)


def _same_values(official: torch.Tensor, ours: torch.Tensor) -> bool:
    if official.shape != ours.shape:
        return False
    rtol = _tolerance(official.dtype, ours.dtype)
    return torch.allclose(official.detach().cpu().double(), ours.detach().cpu().double(), rtol=rtol, atol=0.0)


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def load_salmonn_checkpoint(
    model: nn.Module, source: str | Path | Mapping[str, object]
) -> SalmonnLoadReport:
    """Copy every tensor of an official SALMONN checkpoint into ``model`` and return what was done.

    Args:
        model: a speech LLM with the attributes described in the module docstring.
        source: ``salmonn_v1.pth`` / ``salmonn_7b_v0.pth`` (or a ``.safetensors`` / dict form, see
            :func:`read_salmonn_checkpoint`).

    Raises:
        SalmonnCheckpointError: listing every official key that has no place in ``model`` (no mapping, or a name
            the model lacks), every shape mismatch, every failed buffer or frozen-weight check, and every
            SALMONN-part tensor of ``model`` (``ln_speech``, ``ln_audio``, ``qformer``, ``proj``, LoRA tensors of
            ``llm``) that the checkpoint does not fill. Nothing is written when it raises.
    """
    state, ignored, label = read_salmonn_checkpoint(source)
    tensors: dict[str, torch.Tensor] = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))

    unexpected: list[str] = []
    problems: list[str] = []
    copies: list[tuple[str, str]] = []
    checked: list[tuple[str, str]] = []
    misfits: set[str] = set()  # our tensors named by an official key whose shape does not fit
    for key in sorted(state):
        value = state[key]
        try:
            target = salmonn_key_to_ours(key)
        except KeyError:
            unexpected.append(f"{key}: no mapping to our model")
            continue
        if target is None:
            reference, problem = _check_derived_buffer(key, value, tensors)
        elif target.startswith("beats."):
            reference, problem = _check_frozen_beats(key, value, target, tensors)
        elif target not in tensors:
            unexpected.append(f"{key}: maps to {target}, which our model lacks")
            continue
        elif tensors[target].shape != value.shape:
            problems.append(f"{key}: shape {_shape(value)} but our {target} is {_shape(tensors[target])}")
            misfits.add(target)
            continue
        else:
            copies.append((key, target))
            continue
        if problem:
            problems.append(problem)
        else:
            checked.append((key, reference))

    filled = {target for _, target in copies} | misfits
    missing = [name for name in model.state_dict() if _is_salmonn_part(name) and name not in filled]
    if unexpected or problems or missing:
        sections = []
        if unexpected:
            sections.append("official keys without a place in our model:\n  " + "\n  ".join(unexpected))
        if problems:
            sections.append("mismatches:\n  " + "\n  ".join(problems))
        if missing:
            lines = []
            for name in missing:
                official = _ours_to_salmonn(name)
                lines.append(f"{name} (official key {official})" if official else name)
            sections.append("our SALMONN tensors the checkpoint does not fill:\n  " + "\n  ".join(lines))
        heading = f"SALMONN checkpoint {label} does not fit the model; nothing was loaded."
        raise SalmonnCheckpointError("\n".join([heading, *sections]))

    with torch.no_grad():
        for key, target in copies:
            tensors[target].copy_(state[key])

    trained_elsewhere = set(SALMONN_PARTS) | set(PRETRAINED_PARTS)
    newly_initialised = [
        name for name, _ in model.named_parameters() if name.split(".", 1)[0] not in trained_elsewhere
    ]
    return SalmonnLoadReport(
        source=label,
        loaded=copies,
        checked=checked,
        ignored_entries=ignored,
        newly_initialised=newly_initialised,
    )


def _is_salmonn_part(name: str) -> bool:
    top = name.split(".", 1)[0]
    if top in SALMONN_PARTS:
        return True
    return top == "llm" and ".lora_" in name


def _check_derived_buffer(
    key: str, value: torch.Tensor, tensors: Mapping[str, torch.Tensor]
) -> tuple[str, str | None]:
    """(what ``key`` was compared with, problem or None) for a buffer our model derives itself."""
    if key == _POSITION_IDS:
        shape_ok = value.dim() == 2 and value.shape[0] == 1 and not value.dtype.is_floating_point
        if not shape_ok or not torch.equal(value.cpu().long(), torch.arange(value.shape[-1]).unsqueeze(0)):
            return "", f"{key}: expected arange(N) of shape (1, N), got shape {_shape(value)}"
        return f"arange({value.shape[-1]}) (unused by the query path)", None
    layer = _INV_FREQ_KEY.fullmatch(key).group(1)
    candidates = [f"llm.model.layers.{layer}.self_attn.rotary_emb.inv_freq", "llm.model.rotary_emb.inv_freq"]
    reference = next((name for name in candidates if name in tensors), None)
    if reference is None:
        return "", f"{key}: our llm has no rotary inv_freq to check it against (looked for {', '.join(candidates)})"
    if not _same_values(value, tensors[reference]):
        return "", (
            f"{key}: rotary frequencies {_shape(value)} differ from our {reference} {_shape(tensors[reference])}; "
            "SALMONN's LoRA was trained with these (LLaMA head size and RoPE base must match)"
        )
    return reference, None


def _check_frozen_beats(
    key: str, value: torch.Tensor, target: str, tensors: Mapping[str, torch.Tensor]
) -> tuple[str, str | None]:
    """(our tensor ``key`` was compared with, problem or None) for a frozen BEATs weight SALMONN's saver kept."""
    layer0 = _BEATS_RELATIVE_BIAS.sub(r"\g<1>0\g<2>", target)
    reference = target if target in tensors else layer0 if layer0 in tensors else None
    if reference is None:
        return "", f"{key}: maps to {target}, which our model lacks (no beats, or other BEATs names)"
    if not _same_values(value, tensors[reference]):
        what = "values" if value.shape == tensors[reference].shape else f"shape {_shape(value)}"
        return "", (
            f"{key}: {what} differ from our {reference} {_shape(tensors[reference])}; our BEATs weights are not "
            "the ones SALMONN was trained with: load the official BEATs checkpoint "
            "(BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2) first"
        )
    return reference, None
