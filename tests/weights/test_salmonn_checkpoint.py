import argparse

import pytest
import torch
from torch import nn

from abhinaya.nn.pooling import AttentiveStatisticsPooling
from abhinaya.nn.qformer import WindowQFormer, WindowQFormerConfig
from abhinaya.weights.salmonn_checkpoint import (
    SALMONN_LORA_ALPHA,
    SALMONN_LORA_DROPOUT,
    SALMONN_LORA_RANK,
    SALMONN_LORA_TARGET_MODULES,
    SalmonnCheckpointError,
    load_salmonn_checkpoint,
    salmonn_key_to_ours,
)

pytest.importorskip("peft")

WHISPER, BEATS, QF, INTER, LLM, LLM_LAYERS, HEAD_DIM = 16, 8, 16, 32, 32, 2, 8
BEATS_LAYERS = 3


class TinyBeats(nn.Module):
    """Stands in for BEATs where it matters here: every layer shares layer 0's relative position bias."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList()
        for _ in range(BEATS_LAYERS):
            layer = nn.Module()
            layer.self_attn = nn.Module()
            layer.self_attn.out_proj = nn.Linear(BEATS, BEATS)
            self.encoder.layers.append(layer)
        shared = nn.Embedding(10, 2)
        for layer in self.encoder.layers:
            layer.self_attn.relative_attention_bias = shared


class TinySpeechLLM(nn.Module):
    """The attribute layout of the SALMONN-style speech LLM, tiny and random."""

    def __init__(self, with_beats: bool = True, lora_targets=SALMONN_LORA_TARGET_MODULES):
        super().__init__()
        from peft import LoraConfig, inject_adapter_in_model
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        self.whisper = nn.Linear(4, WHISPER)
        self.ln_speech = nn.LayerNorm(WHISPER)
        width = WHISPER
        if with_beats:
            self.beats = TinyBeats()
            self.ln_audio = nn.LayerNorm(BEATS)
            width += BEATS
        self.qformer = WindowQFormer(
            WindowQFormerConfig(
                encoder_width=width, hidden_size=QF, num_layers=2, num_heads=2, intermediate_size=INTER
            )
        )
        self.proj = nn.Linear(QF, LLM)
        config = LlamaConfig(
            vocab_size=64,
            hidden_size=LLM,
            intermediate_size=64,
            num_hidden_layers=LLM_LAYERS,
            num_attention_heads=LLM // HEAD_DIM,
            num_key_value_heads=LLM // HEAD_DIM,
        )
        self.llm = LlamaForCausalLM(config)
        for p in self.llm.parameters():
            p.requires_grad_(False)
        lora = LoraConfig(
            r=SALMONN_LORA_RANK,
            lora_alpha=SALMONN_LORA_ALPHA,
            lora_dropout=SALMONN_LORA_DROPOUT,
            target_modules=list(lora_targets),
        )
        inject_adapter_in_model(lora, self.llm)
        for encoder in (self.whisper, getattr(self, "beats", None)):
            if encoder is not None:
                encoder.requires_grad_(False)
        self.pooling = AttentiveStatisticsPooling(LLM, 8)
        self.head = nn.Linear(2 * LLM, 4)


def official_state(model: TinySpeechLLM, with_beats=True, with_inv_freq=True, dtype=torch.float32) -> dict:
    """A state dict in the layout of SALMONN's saved checkpoints (official names), random values."""
    g = torch.Generator().manual_seed(1)

    def r(*shape):
        return torch.randn(*shape, generator=g).to(dtype)

    width = WHISPER + (BEATS if with_beats else 0)
    sd = {
        "speech_query_tokens": r(1, 1, QF),
        "speech_Qformer.bert.embeddings.LayerNorm.weight": r(QF),
        "speech_Qformer.bert.embeddings.LayerNorm.bias": r(QF),
        "speech_Qformer.bert.embeddings.position_ids": torch.arange(512).expand(1, -1).clone(),
    }
    for i in range(2):
        p = f"speech_Qformer.bert.encoder.layer.{i}."
        for block, kv_width in (("attention", QF), ("crossattention", width)):
            sd[p + f"{block}.self.query.weight"] = r(QF, QF)
            sd[p + f"{block}.self.key.weight"] = r(QF, kv_width)
            sd[p + f"{block}.self.value.weight"] = r(QF, kv_width)
            for name in ("self.query", "self.key", "self.value", "output.dense", "output.LayerNorm"):
                sd[p + f"{block}.{name}.bias"] = r(QF)
            sd[p + f"{block}.output.dense.weight"] = r(QF, QF)
            sd[p + f"{block}.output.LayerNorm.weight"] = r(QF)
        sd[p + "intermediate_query.dense.weight"] = r(INTER, QF)
        sd[p + "intermediate_query.dense.bias"] = r(INTER)
        sd[p + "output_query.dense.weight"] = r(QF, INTER)
        sd[p + "output_query.dense.bias"] = r(QF)
        sd[p + "output_query.LayerNorm.weight"] = r(QF)
        sd[p + "output_query.LayerNorm.bias"] = r(QF)
    sd["speech_llama_proj.weight"] = r(LLM, QF)
    sd["speech_llama_proj.bias"] = r(LLM)
    sd["ln_speech.weight"] = r(WHISPER)
    sd["ln_speech.bias"] = r(WHISPER)
    if with_beats:
        sd["ln_audio.weight"] = r(BEATS)
        sd["ln_audio.bias"] = r(BEATS)
        shared = model.beats.encoder.layers[0].self_attn.relative_attention_bias.weight
        for i in range(1, BEATS_LAYERS):
            sd[f"beats.encoder.layers.{i}.self_attn.relative_attention_bias.weight"] = shared.detach().clone()
    for i in range(LLM_LAYERS):
        p = f"llama_model.base_model.model.model.layers.{i}.self_attn."
        for module in ("q_proj", "v_proj"):
            sd[p + f"{module}.lora_A.default.weight"] = r(SALMONN_LORA_RANK, LLM)
            sd[p + f"{module}.lora_B.default.weight"] = r(LLM, SALMONN_LORA_RANK)
        if with_inv_freq:
            inv_freq = 1.0 / (10000 ** (torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM))
            sd[p + "rotary_emb.inv_freq"] = inv_freq.to(dtype)
    return sd


_Q = "speech_Qformer.bert.encoder.layer."
OFFICIAL_TO_OURS = {  # a few pairs spelled out independently of the module's tables
    "speech_query_tokens": "qformer.query_tokens",
    "speech_Qformer.bert.embeddings.LayerNorm.bias": "qformer.input_norm.bias",
    _Q + "0.attention.self.value.weight": "qformer.layers.0.self_attention.value.weight",
    _Q + "1.attention.output.LayerNorm.weight": "qformer.layers.1.self_attention.norm.weight",
    _Q + "1.crossattention.self.key.weight": "qformer.layers.1.cross_attention.key.weight",
    _Q + "0.crossattention.output.dense.bias": "qformer.layers.0.cross_attention.output.bias",
    _Q + "1.intermediate_query.dense.weight": "qformer.layers.1.feed_forward.up.weight",
    _Q + "0.output_query.dense.weight": "qformer.layers.0.feed_forward.down.weight",
    _Q + "0.output_query.LayerNorm.bias": "qformer.layers.0.feed_forward.norm.bias",
    "speech_llama_proj.weight": "proj.weight",
    "ln_audio.bias": "ln_audio.bias",
    "llama_model.base_model.model.model.layers.1.self_attn.v_proj.lora_B.default.weight":
        "llm.model.layers.1.self_attn.v_proj.lora_B.default.weight",
}


def snapshot(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_key_map_on_13b_names():
    for official, ours in OFFICIAL_TO_OURS.items():
        assert salmonn_key_to_ours(official) == ours
    assert (
        salmonn_key_to_ours("llama_model.base_model.model.model.layers.39.self_attn.q_proj.lora_A.default.weight")
        == "llm.model.layers.39.self_attn.q_proj.lora_A.default.weight"
    )
    assert salmonn_key_to_ours("speech_Qformer.bert.embeddings.position_ids") is None
    assert salmonn_key_to_ours("llama_model.base_model.model.model.layers.39.self_attn.rotary_emb.inv_freq") is None
    for unknown in (
        "speech_Qformer.bert.embeddings.word_embeddings.weight",
        "speech_Qformer.bert.encoder.layer.0.output.dense.weight",
        "speech_Qformer.cls.predictions.bias",
        "llama_model.base_model.model.model.layers.0.self_attn.q_proj.weight",
        "speech_encoder.layers.0.fc1.weight",
    ):
        with pytest.raises(KeyError, match="no mapping"):
            salmonn_key_to_ours(unknown)


def test_loads_a_file_in_the_official_layout(tmp_path):
    model = TinySpeechLLM()
    sd = official_state(model)
    path = tmp_path / "salmonn_tiny.pth"
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(3))]).state_dict()
    torch.save(
        {"model": sd, "optimizer": optimizer, "config": {"model": {"lora_rank": 8}}, "scaler": None, "epoch": 2},
        path,
    )
    before = snapshot(model)

    report = load_salmonn_checkpoint(model, path)

    ours = model.state_dict()
    for official, name in OFFICIAL_TO_OURS.items():
        assert torch.equal(ours[name], sd[official]), name
    buffers = {"speech_Qformer.bert.embeddings.position_ids"}
    buffers |= {k for k in sd if k.endswith("inv_freq") or k.startswith("beats.")}
    assert {official for official, _ in report.loaded} == set(sd) - buffers
    for official, name in report.loaded:
        assert torch.equal(ours[name], sd[official]), (official, name)
    # Every SALMONN-part tensor of ours got a value; nothing else changed.
    salmonn_parts = [k for k in ours if k.split(".")[0] in ("ln_speech", "ln_audio", "qformer", "proj")]
    salmonn_parts += [k for k in ours if k.startswith("llm.") and ".lora_" in k]
    assert sorted(name for _, name in report.loaded) == sorted(salmonn_parts)
    assert len(report.loaded) == 55 + 2 + 4 + 4 * LLM_LAYERS
    for name in ours:
        if name not in salmonn_parts:
            assert torch.equal(ours[name], before[name]), name

    assert dict(report.checked) == {
        "speech_Qformer.bert.embeddings.position_ids": "arange(512) (unused by the query path)",
        "llama_model.base_model.model.model.layers.0.self_attn.rotary_emb.inv_freq": "llm.model.rotary_emb.inv_freq",
        "llama_model.base_model.model.model.layers.1.self_attn.rotary_emb.inv_freq": "llm.model.rotary_emb.inv_freq",
        "beats.encoder.layers.1.self_attn.relative_attention_bias.weight":
            "beats.encoder.layers.1.self_attn.relative_attention_bias.weight",
        "beats.encoder.layers.2.self_attn.relative_attention_bias.weight":
            "beats.encoder.layers.2.self_attn.relative_attention_bias.weight",
    }
    assert report.ignored_entries == ["config", "epoch", "optimizer", "scaler"]
    assert report.newly_initialised == [n for n, _ in model.named_parameters() if n.startswith(("pooling.", "head."))]
    assert report.source == str(path)
    summary = report.summary()
    assert f"{len(report.loaded)} tensors loaded" in summary
    assert "qformer: 55" in summary and "llm (LoRA): 8" in summary
    assert "5 tensors checked" in summary
    assert "optimizer" in summary and "head.weight" in summary


def test_without_beats_rotary_buffers_or_extra_entries(tmp_path):
    """SALMONN without BEATs, a file saved by a transformers version with a non-persistent inv_freq, as a
    bare state dict; also in half precision and as safetensors."""
    from safetensors.torch import save_file

    model = TinySpeechLLM(with_beats=False)
    sd = official_state(model, with_beats=False, with_inv_freq=False, dtype=torch.float16)
    report = load_salmonn_checkpoint(model, sd)
    assert report.source == "<state dict>"
    assert [official for official, _ in report.checked] == ["speech_Qformer.bert.embeddings.position_ids"]
    assert report.ignored_entries == []
    assert torch.equal(model.proj.weight, sd["speech_llama_proj.weight"].float())

    path = tmp_path / "salmonn.safetensors"
    save_file(sd, str(path))
    model = TinySpeechLLM(with_beats=False)
    assert len(load_salmonn_checkpoint(model, path).loaded) == len(report.loaded)
    assert torch.equal(model.qformer.query_tokens, sd["speech_query_tokens"].float())


def test_half_precision_rotary_buffers_pass_the_check():
    model = TinySpeechLLM()
    report = load_salmonn_checkpoint(model, official_state(model, dtype=torch.float16))
    assert sum(official.endswith("inv_freq") for official, _ in report.checked) == LLM_LAYERS


LORA_Q0 = "llama_model.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"


def _extra_unmapped(sd):
    sd["speech_Qformer.bert.embeddings.word_embeddings.weight"] = torch.zeros(30, QF)
    return "speech_Qformer.bert.embeddings.word_embeddings.weight"


def _extra_layer(sd):
    key = "llama_model.base_model.model.model.layers.7.self_attn.q_proj.lora_A.default.weight"
    sd[key] = torch.zeros(SALMONN_LORA_RANK, LLM)
    return key


def _extra_target(sd):
    key = "llama_model.base_model.model.model.layers.0.self_attn.k_proj.lora_A.default.weight"
    sd[key] = torch.zeros(SALMONN_LORA_RANK, LLM)
    return key


def _missing_qformer(sd):
    del sd["speech_Qformer.bert.encoder.layer.1.output_query.LayerNorm.bias"]
    return "qformer.layers.1.feed_forward.norm.bias"


def _missing_lora(sd):
    del sd[LORA_Q0]
    return LORA_Q0


def _wrong_shape(sd):
    sd["speech_llama_proj.weight"] = torch.zeros(LLM + 1, QF)
    return "speech_llama_proj.weight"


def _wrong_position_ids(sd):
    sd["speech_Qformer.bert.embeddings.position_ids"] = torch.arange(512).flip(0).unsqueeze(0)
    return "speech_Qformer.bert.embeddings.position_ids"


def _wrong_inv_freq(sd):
    key = "llama_model.base_model.model.model.layers.1.self_attn.rotary_emb.inv_freq"
    sd[key] = sd[key] * 2
    return key


def _other_beats(sd):
    key = "beats.encoder.layers.2.self_attn.relative_attention_bias.weight"
    sd[key] = sd[key] + 0.5
    return key


@pytest.mark.parametrize(
    "change",
    [
        _extra_unmapped,
        _extra_layer,
        _extra_target,
        _missing_qformer,
        _missing_lora,
        _wrong_shape,
        _wrong_position_ids,
        _wrong_inv_freq,
        _other_beats,
    ],
)
def test_every_misfit_is_an_error_naming_the_key(change, tmp_path):
    model = TinySpeechLLM()
    sd = official_state(model)
    named = change(sd)
    path = tmp_path / "bad.pth"
    torch.save({"model": sd}, path)
    before = snapshot(model)
    with pytest.raises(SalmonnCheckpointError) as error:
        load_salmonn_checkpoint(model, path)
    assert named in str(error.value)
    assert str(path) in str(error.value)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items()), "a failed load must write nothing"


def test_error_lists_every_problem_and_the_official_name_of_missing_tensors():
    model = TinySpeechLLM()
    sd = official_state(model)
    keys = [_extra_unmapped(sd), _wrong_shape(sd)]
    missing = _missing_qformer(sd)
    with pytest.raises(SalmonnCheckpointError) as error:
        load_salmonn_checkpoint(model, sd)
    message = str(error.value)
    for key in keys + [missing, "speech_Qformer.bert.encoder.layer.1.output_query.LayerNorm.bias"]:
        assert key in message


def test_beats_keys_need_a_beats_branch():
    model = TinySpeechLLM(with_beats=False)
    sd = official_state(TinySpeechLLM(), with_beats=True)
    with pytest.raises(SalmonnCheckpointError, match="beats.encoder.layers.1.self_attn.relative_attention_bias"):
        load_salmonn_checkpoint(model, sd)


def test_lora_on_more_modules_than_salmonn_is_missing_values():
    model = TinySpeechLLM(lora_targets=("q_proj", "k_proj", "v_proj"))
    with pytest.raises(SalmonnCheckpointError, match=r"llm\.model\.layers\.0\.self_attn\.k_proj\.lora_A"):
        load_salmonn_checkpoint(model, official_state(model))


def test_pickled_objects_are_refused(tmp_path):
    model = TinySpeechLLM()
    path = tmp_path / "pickled.pth"
    torch.save({"model": official_state(model), "args": argparse.Namespace(lr=1e-5)}, path)
    with pytest.raises(SalmonnCheckpointError, match="weights_only"):
        load_salmonn_checkpoint(model, path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_salmonn_checkpoint(TinySpeechLLM(), tmp_path / "nothing.pth")
