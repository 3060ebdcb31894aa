"""The SALMONN-style speech LLM, built tiny from configs."""

import dataclasses

import pytest
import torch

from abhinaya.models.speech_llm import SpeechLLM, SpeechLLMConfig
from abhinaya.nn.qformer import WindowQFormerConfig
from abhinaya.nn.standardize import BatchStandardize, RunningStandardize
from tests.conftest import TINY_LLAMA, TINY_WHISPER

LLAMA = {"model_type": "llama", "vocab_size": 40, "pad_token_id": 0, **TINY_LLAMA}
WHISPER = {k: v for k, v in TINY_WHISPER.items()}
QFORMER = WindowQFormerConfig(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, window=17, stride=17)


def tiny_config(**overrides) -> SpeechLLMConfig:
    values = dict(
        whisper_config=WHISPER,
        llm_config=LLAMA,
        qformer=QFORMER,
        attention_dim=8,
        head_hidden=16,
        num_labels=4,
        lora_target_modules=["q_proj", "v_proj"],
    )
    values.update(overrides)
    return SpeechLLMConfig(**values)


def tiny_model(**overrides) -> SpeechLLM:
    torch.manual_seed(0)
    return SpeechLLM(tiny_config(**overrides)).eval()


def prompt_batch(batch: int, suffix_lengths=None):
    """Token ids around the speech: a 3-token prefix and suffixes of the given lengths (right-padded)."""
    suffix_lengths = suffix_lengths or [2] * batch
    prefix = torch.tensor([[1, 5, 6]] * batch)
    suffix = torch.zeros(batch, max(suffix_lengths), dtype=torch.long)
    for b, n in enumerate(suffix_lengths):
        suffix[b, :n] = torch.arange(7, 7 + n)
    return prefix, torch.full((batch,), 3), suffix, torch.tensor(suffix_lengths)


def run(model, waveforms, lengths, suffix_lengths=None):
    prefix, prefix_lengths, suffix, lengths_s = prompt_batch(waveforms.shape[0], suffix_lengths)
    return model(waveforms, lengths, prefix, prefix_lengths, suffix, lengths_s)


def test_logits_shape_and_only_windows_that_hold_audio():
    model = tiny_model()
    waves = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 8000])
    assert run(model, waves, lengths).shape == (2, 4)
    speech, mask = model.speech_embeddings(waves, lengths)
    # 1 s -> 50 Whisper frames -> ceil(50 / 17) = 3 windows; 0.5 s -> 25 frames -> 2 windows (SALMONN: 88 each).
    assert mask.sum(dim=1).tolist() == [3, 2]
    assert speech.shape == (2, 3, TINY_LLAMA["hidden_size"])


def test_padding_does_not_change_an_utterances_logits():
    model = tiny_model()
    short = torch.randn(1, 7000)
    alone = run(model, short, torch.tensor([7000]), [1])
    batch = torch.zeros(2, 20000)
    batch[0, :7000] = short[0]
    batch[1] = torch.randn(20000)
    together = run(model, batch, torch.tensor([7000, 20000]), [1, 3])
    torch.testing.assert_close(together[0], alone[0], atol=1e-4, rtol=1e-4)


def test_only_adapters_train_and_gradients_reach_them():
    model = tiny_model().train()
    assert not model.whisper.training  # frozen encoder stays in eval mode
    logits = run(model, torch.randn(2, 9000), torch.tensor([9000, 6000]))
    logits.sum().backward()
    trainable = model.trainable_state_dict()
    assert all(k.startswith(("ln_speech.", "qformer.", "proj.", "pooling.", "head.")) or "lora_" in k for k in trainable)
    assert any("lora_B" in k for k in trainable) and "qformer.query_tokens" in trainable
    assert not any(p.requires_grad for p in model.whisper.parameters())
    named = dict(model.named_parameters())
    for key in ("qformer.query_tokens", "proj.weight", "ln_speech.weight"):
        assert named[key].grad is not None and named[key].grad.abs().sum() > 0
    lora_a = [p for n, p in named.items() if "lora_A" in n]
    assert lora_a and all(p.grad is not None for p in lora_a)


def test_rebuilt_from_its_config_with_the_trained_part_gives_the_same_logits():
    model = tiny_model()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    model.train()
    run(model, torch.randn(3, 9000), torch.tensor([9000, 7000, 5000]))  # moves the head's running statistics
    model.eval()
    state = model.trainable_state_dict()
    assert {"head.norm.running_mean", "head.norm.running_var"} <= set(state)
    # The frozen parts come from the same "pretrained" weights; only the trained part is loaded.
    torch.manual_seed(0)
    rebuilt = SpeechLLM(model.config).eval()
    missing, unexpected = rebuilt.load_state_dict(state, strict=False)
    assert not unexpected and all(k not in state for k in missing)
    waves, lengths = torch.randn(2, 12000), torch.tensor([12000, 9000])
    torch.testing.assert_close(run(rebuilt, waves, lengths), run(model, waves, lengths))
    # Runs saved before pooling, norm and MLP became one head module load too.
    earlier = {"head.pooling.": "pooling.", "head.norm.": "head.0.", "head.fc1.": "head.2.", "head.fc2.": "head.5."}
    old_state = {}
    for key, value in state.items():
        new = next((n for n in earlier if key.startswith(n)), None)
        old_state[key if new is None else earlier[new] + key[len(new) :]] = value
    assert {"pooling.attention.0.weight", "head.0.running_mean", "head.2.weight", "head.5.bias"} <= set(old_state)
    torch.manual_seed(0)
    from_old = SpeechLLM(model.config).eval()
    missing, unexpected = from_old.load_state_dict(old_state, strict=False)
    assert not unexpected and all(k not in state for k in missing)
    torch.testing.assert_close(run(from_old, waves, lengths), run(model, waves, lengths))


def test_feature_cache_gives_the_same_logits_and_skips_the_encoder(tmp_path, monkeypatch):
    plain = tiny_model()
    cached = tiny_model(feature_cache=str(tmp_path / "features"))
    waves, lengths = torch.randn(3, 10000), torch.tensor([10000, 4000, 7000])
    expected = run(plain, waves, lengths)
    torch.testing.assert_close(run(cached, waves, lengths), expected)
    assert cached.cache.misses == 3 and len(cached.cache) == 3

    def fail(*args, **kwargs):
        raise AssertionError("the encoder ran although its output is cached")

    monkeypatch.setattr(cached, "_encode_uncached", fail)
    torch.testing.assert_close(run(cached, waves, lengths), expected)
    assert cached.cache.hits == 3
    # Another encoder (different weights) never reads these entries.
    torch.manual_seed(1)
    other = SpeechLLM(tiny_config(feature_cache=str(tmp_path / "features")))
    assert other.encoder_key() != cached.encoder_key()


def test_training_crop_is_taken_from_the_features_and_inference_is_deterministic():
    model = tiny_model(train_crop_seconds=0.4)  # 20 frames -> 2 windows
    waves, lengths = torch.randn(1, 32000), torch.tensor([32000])
    model.train()
    _, mask = model.speech_embeddings(waves, lengths)
    assert int(mask.sum()) == 2
    model.eval()
    _, mask = model.speech_embeddings(waves, lengths)
    assert int(mask.sum()) == 6  # 2 s = 100 frames -> 6 windows
    torch.testing.assert_close(run(model, waves, lengths), run(model, waves, lengths))


def test_generative_scores_are_the_class_names_log_likelihood():
    model = tiny_model(output="generative")
    names = [[11], [12, 13], [14], [15, 16]]
    model.set_label_tokens(names)
    waves, lengths = torch.randn(2, 9000), torch.tensor([9000, 5000])
    scores = run(model, waves, lengths, [2, 1])
    assert scores.shape == (2, 4) and bool((scores < 0).all())
    # Brute force: the full causal LM on the prompt followed by each name.
    prefix, prefix_lengths, suffix, suffix_lengths = prompt_batch(2, [2, 1])
    speech, speech_mask = model.speech_embeddings(waves, lengths)
    embeds, mask, _ = model.assemble(speech, speech_mask, prefix, prefix_lengths, suffix, suffix_lengths)
    for b in range(2):
        n = int(mask[b].sum())
        for c, ids in enumerate(names):
            tokens = torch.tensor(ids)
            seq = torch.cat([embeds[b, :n], model.llm.get_input_embeddings()(tokens)])[None]
            logp = torch.log_softmax(model.llm(inputs_embeds=seq).logits[0].float(), dim=-1)
            expected = sum(logp[n - 1 + j, t] for j, t in enumerate(ids))
            torch.testing.assert_close(scores[b, c], expected, atol=1e-4, rtol=1e-4)


def test_generative_needs_the_class_names_tokens():
    model = tiny_model(output="generative")
    with pytest.raises(RuntimeError, match="set_label_tokens"):
        run(model, torch.randn(1, 8000), torch.tensor([8000]))


def test_layer_truncates_the_llm_and_bad_settings_are_errors():
    model = tiny_model(layer=2)
    assert len(model.llm.model.layers) == 2
    with pytest.raises(ValueError, match="decoder layers"):
        tiny_model(layer=9)
    with pytest.raises(ValueError, match="generative"):
        tiny_config(layer=2, output="generative")
    with pytest.raises(ValueError, match="whisper_config"):
        SpeechLLM(dataclasses.replace(tiny_config(), whisper_config=None))


def test_beats_branch_is_concatenated_frame_wise():
    from abhinaya.nn.beats import BEATsConfig

    beats = dataclasses.asdict(BEATsConfig.tiny())
    model = tiny_model(beats_config=beats)
    assert model.config.qformer.encoder_width == WHISPER["d_model"] + beats["encoder_embed_dim"]
    assert hasattr(model, "ln_audio")
    waves, lengths = torch.randn(2, 16000), torch.tensor([16000, 12000])
    features = model.frozen_features(waves, lengths)
    assert [f.shape for f in features] == [(50, model.config.qformer.encoder_width), (38, model.config.qformer.encoder_width)]
    assert run(model, waves, lengths).shape == (2, 4)


def test_an_official_salmonn_checkpoint_loads_every_key(tmp_path):
    """A checkpoint in SALMONN's saved layout (official key names, the buffers its saver keeps) fills every
    SALMONN part of the real model: LayerNorms, Q-Former, projection and LoRA."""
    from abhinaya.nn.beats import BEATsConfig
    from abhinaya.weights.salmonn_checkpoint import (
        _ours_to_salmonn,
        load_salmonn_checkpoint,
    )

    model = tiny_model(beats_config=dataclasses.asdict(BEATsConfig.tiny()))
    generator = torch.Generator().manual_seed(3)
    official = {}
    for name, p in model.named_parameters():
        if p.requires_grad and not name.startswith(("pooling.", "head.")):
            official[_ours_to_salmonn(name)] = torch.randn(p.shape, generator=generator)
    assert len(official) == len(model.trainable_state_dict()) - len(
        [k for k in model.trainable_state_dict() if k.startswith(("pooling.", "head."))]
    )
    assert "speech_query_tokens" in official and "speech_llama_proj.weight" in official
    assert "llama_model.base_model.model.model.layers.2.self_attn.v_proj.lora_B.default.weight" in official
    official["speech_Qformer.bert.embeddings.position_ids"] = torch.arange(512).expand(1, -1).clone()
    inv_freq = model.llm.model.rotary_emb.inv_freq
    for i in range(TINY_LLAMA["num_hidden_layers"]):
        official[f"llama_model.base_model.model.model.layers.{i}.self_attn.rotary_emb.inv_freq"] = inv_freq.clone()
    shared = model.beats.encoder.layers[0].self_attn.relative_attention_bias.weight
    official["beats.encoder.layers.1.self_attn.relative_attention_bias.weight"] = shared.detach().clone()
    path = tmp_path / "salmonn_tiny.pth"
    torch.save({"model": official}, path)

    waves, lengths = torch.randn(1, 9000), torch.tensor([9000])
    before = run(model, waves, lengths)
    report = load_salmonn_checkpoint(model, path)
    state = model.state_dict()
    for key, ours in report.loaded:
        assert torch.equal(state[ours], official[key])
    assert len(report.loaded) == len(official) - 2 - TINY_LLAMA["num_hidden_layers"]
    assert not torch.allclose(run(model, waves, lengths), before)

    official.pop("speech_llama_proj.bias")
    torch.save({"model": official}, path)
    with pytest.raises(ValueError, match="speech_llama_proj.bias"):
        load_salmonn_checkpoint(model, path)


def test_whisper_layer_runs_only_the_layers_below_it(monkeypatch):
    model = tiny_model(whisper_layer=1)
    calls = []
    for i, layer in enumerate(model.whisper.layers):
        monkeypatch.setattr(layer, "forward", lambda *a, i=i, f=layer.forward, **k: calls.append(i) or f(*a, **k))
    model.frozen_features(torch.randn(1, 8000), torch.tensor([8000]))
    assert calls == [0]
    assert model.encoder_key() != tiny_model().encoder_key()  # another hidden state is another cache entry
    with pytest.raises(ValueError, match="whisper_layer"):
        tiny_model(whisper_layer=5)


def test_content_mask_marks_the_speech_and_transcript_tokens_only():
    model = tiny_model()
    speech, speech_mask = model.speech_embeddings(torch.randn(2, 16000), torch.tensor([16000, 8000]))
    prefix, prefix_lengths, suffix, suffix_lengths = prompt_batch(2, [4, 2])
    flags = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    _, mask, content = model.assemble(speech, speech_mask, prefix, prefix_lengths, suffix, suffix_lengths, flags)
    # Row 0: 3 prefix, 3 speech, 4 suffix (2 of them transcript); row 1: 3 prefix, 2 speech, 2 suffix (1 transcript).
    assert content[0].tolist() == [False] * 3 + [True] * 3 + [False, True, True, False]
    assert content[1].tolist() == [False] * 3 + [True] * 2 + [True, False] + [False] * 3
    assert mask.sum(dim=1).tolist() == [10, 7]
    assert not bool((content & ~mask.bool()).any())


def test_head_standardises_per_dimension_and_takes_a_batch_of_one_in_training():
    model = tiny_model().train()
    assert run(model, torch.randn(1, 8000), torch.tensor([8000])).shape == (1, 4)
    assert isinstance(model.head.norm, RunningStandardize)
    assert isinstance(tiny_model(head_norm="batch").head.norm, BatchStandardize)
    layer_norm = tiny_model(head_norm="layer")
    assert isinstance(layer_norm.head.norm, torch.nn.LayerNorm)
    with pytest.raises(ValueError, match="head_norm"):
        tiny_model(head_norm="group")


def test_param_groups_cover_every_trainable_parameter_once_with_the_connector_at_its_own_rate():
    model = tiny_model()
    groups = model.param_groups(2e-4, 1e-3, 0.01, connector_lr=1e-5)
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    by_name = {g["name"]: g for g in groups}
    assert {"lora", "connector", "connector_no_decay", "head", "head_no_decay"} <= set(by_name)
    connector = {id(p) for part in (model.ln_speech, model.qformer, model.proj) for p in part.parameters()}
    assert {id(p) for p in by_name["connector"]["params"] + by_name["connector_no_decay"]["params"]} == connector
    assert by_name["connector"]["lr"] == by_name["connector_no_decay"]["lr"] == 1e-5
    assert by_name["head"]["lr"] == 1e-3 and by_name["lora"]["lr"] == 2e-4
    assert by_name["connector_no_decay"]["weight_decay"] == 0.0 and by_name["connector"]["weight_decay"] == 0.01
    # Without connector_lr the connector trains at the head's rate.
    assert {g["lr"] for g in model.param_groups(2e-4, 1e-3, 0.01) if g["name"].startswith("connector")} == {1e-3}
