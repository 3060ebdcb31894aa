import pytest
import torch

from abhinaya.models.llm import llm_config_dict
from abhinaya.models.text_classifier import LLMTextClassifier, LLMTextClassifierConfig


def make_model(tiny_llama_dir, **overrides) -> LLMTextClassifier:
    from transformers import AutoModel

    torch.manual_seed(0)
    base = AutoModel.from_pretrained(tiny_llama_dir)
    config = LLMTextClassifierConfig(llm=str(tiny_llama_dir), llm_config=llm_config_dict(base.config), num_labels=4)
    for key, value in overrides.items():
        setattr(config, key, value)
    config.__post_init__()
    return LLMTextClassifier(config, base=base)


def batch(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


ROWS = [[5, 9, 12, 30, 7], [8, 40], [11, 12, 13]]


def test_logits_shape_and_padding_invariance(tiny_llama_dir):
    model = make_model(tiny_llama_dir, lora_layers=1).eval()
    ids, mask = batch(ROWS)
    with torch.no_grad():
        logits = model(ids, mask)
        assert logits.shape == (3, 4)
        for b, row in enumerate(ROWS):
            alone = model(*batch([row]))
            torch.testing.assert_close(alone[0], logits[b], rtol=1e-4, atol=1e-5)
        # Whatever the padded positions hold, the result is the same.
        noisy = ids.clone()
        noisy[mask == 0] = 33
        torch.testing.assert_close(model(noisy, mask), logits, rtol=1e-4, atol=1e-5)


def test_hidden_states_match_the_language_model_run_directly(tiny_llama_dir):
    from transformers import AutoModel

    reference = AutoModel.from_pretrained(tiny_llama_dir).eval()
    ids, mask = batch(ROWS)
    with torch.no_grad():
        states = reference(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        for layer, lora_layers in [(None, 1), (2, 1), (2, None), (1, 1)]:
            model = make_model(tiny_llama_dir, layer=layer, lora_layers=lora_layers).eval()
            run = layer or 3
            assert len(model.llm.layers) == run
            # LoRA starts as the identity (B = 0), so the classifier's states are the LM's own.
            expected = reference.norm(states[run]) if run < 3 else states[3]
            got = model.hidden_states(ids, mask)
            valid = mask.bool()
            torch.testing.assert_close(got[valid], expected[valid], rtol=1e-4, atol=1e-5)


def test_frozen_cache_is_exact_and_used(tiny_llama_dir):
    model = make_model(tiny_llama_dir, lora_layers=1).eval()
    uncached = make_model(tiny_llama_dir, lora_layers=1, cache_frozen=False).eval()
    uncached.load_state_dict(model.state_dict())
    ids, mask = batch(ROWS)
    with torch.no_grad():
        first = model(ids, mask)
        assert len(model._frozen_cache) == 3
        again = model(ids, mask)  # every row from the cache now
        reordered = model(*batch([ROWS[1], ROWS[0]]))
        plain = uncached(ids, mask)
    assert len(uncached._frozen_cache) == 0
    torch.testing.assert_close(again, first)
    torch.testing.assert_close(plain, first, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(reordered[0], first[1], rtol=1e-4, atol=1e-5)
    model.clear_cache()
    assert not model._frozen_cache


def test_gradients_reach_only_lora_of_the_adapted_layers_and_the_head(tiny_llama_dir):
    model = make_model(tiny_llama_dir, lora_layers=2)
    torch.nn.init.normal_(model.head.pooling.attention[2].weight, std=0.1)  # off uniform, as after a step
    model.train()
    assert not any(layer.training for layer in list(model.llm.layers)[:1])
    ids, mask = batch(ROWS)
    model(ids, mask).sum().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert "lora_" in name or name.startswith(("pooling.", "head.")), name
            if "lora_A" in name:
                continue  # B starts at zero, so A's first gradient is zero by construction
            assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reached {name}"
        else:
            assert p.grad is None, name
    adapted = {int(n.split("layers.")[1].split(".")[0]) for n, p in model.named_parameters() if "lora_" in n}
    assert adapted == {1, 2}


def test_trainable_state_round_trips_with_every_key(tiny_llama_dir):
    from abhinaya.weights.checkpoint import load_model_weights, save_tensors

    model = make_model(tiny_llama_dir, lora_layers=1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    state = model.trainable_state_dict()
    assert state and all("lora_" in k or k.startswith(("pooling.", "head.")) for k in state)
    assert len(state) == sum(p.requires_grad for p in model.parameters())
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = save_tensors(Path(folder) / "model.safetensors", state)
        fresh = make_model(tiny_llama_dir, lora_layers=1)
        load_model_weights(fresh, path, partial=True)
    ids, mask = batch(ROWS)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(ids, mask), model.eval()(ids, mask))


def test_param_groups_cover_each_trainable_parameter_once(tiny_llama_dir):
    model = make_model(tiny_llama_dir)
    groups = model.param_groups(2e-4, 1e-3, 0.01)
    seen = [id(p) for g in groups for p in g["params"]]
    assert len(seen) == len(set(seen)) == sum(p.requires_grad for p in model.parameters())
    lora = next(g for g in groups if g["name"] == "lora")
    assert lora["lr"] == 2e-4 and all(p.ndim == 2 for p in lora["params"])


def test_layer_range_is_restored_after_an_error(tiny_llama_dir):
    model = make_model(tiny_llama_dir, lora_layers=1)
    layers = model.llm.layers
    with pytest.raises(RuntimeError):
        with model._layer_range(1, 2, final_norm=False):
            assert len(model.llm.layers) == 1
            raise RuntimeError("boom")
    assert model.llm.layers is layers and model.llm.config.num_hidden_layers == 3
    assert not isinstance(model.llm.norm, torch.nn.Identity)


def test_bad_settings_are_clear_errors(tiny_llama_dir):
    with pytest.raises(ValueError, match="pooling"):
        LLMTextClassifierConfig(pooling="max")
    with pytest.raises(ValueError, match="llm_config is empty"):
        LLMTextClassifier(LLMTextClassifierConfig())
    with pytest.raises(ValueError, match="decoder layers"):
        make_model(tiny_llama_dir, layer=7)


def test_running_head_norm_statistics_are_saved_and_reloaded(tiny_llama_dir):
    from abhinaya.nn.standardize import RunningStandardize
    from abhinaya.weights.checkpoint import load_model_weights, save_tensors

    model = make_model(tiny_llama_dir, lora_layers=1, head_norm="running")
    assert isinstance(model.head.norm, RunningStandardize)
    ids, mask = batch(ROWS)
    model.train()
    for _ in range(3):
        model(ids, mask)  # updates the running statistics
    state = model.trainable_state_dict()
    assert {"head.norm.running_mean", "head.norm.running_var", "head.norm.num_batches_tracked"} <= set(state)
    assert int(state["head.norm.num_batches_tracked"]) == 3
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = save_tensors(Path(folder) / "model.safetensors", state)
        fresh = make_model(tiny_llama_dir, lora_layers=1, head_norm="running")
        load_model_weights(fresh, path, partial=True)
    torch.testing.assert_close(fresh.head.norm.running_var, model.head.norm.running_var)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(ids, mask), model.eval()(ids, mask))
    with pytest.raises(ValueError, match="head_norm"):
        make_model(tiny_llama_dir, head_norm="group")


def test_pool_mask_pools_only_the_utterance_and_keeps_padding_invariance(tiny_llama_dir):
    model = make_model(tiny_llama_dir, lora_layers=1, pooling="mean_std").eval()
    ids, mask = batch(ROWS)
    pool = mask.bool().clone()
    pool[0, :3] = False  # row 0: three tokens of context before a two-token utterance
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask, mask.bool()), model(ids, mask))
        logits = model(ids, mask, pool)
        hidden = model.hidden_states(ids, mask)
        own = hidden[0, 3:5].float()
        std = (own.pow(2).mean(0) - own.mean(0).pow(2)).clamp(min=1e-5).sqrt()
        expected = model.head.classify(torch.cat([own.mean(0), std])[None])
        torch.testing.assert_close(logits[0], expected[0], rtol=1e-4, atol=1e-5)
        # The context still matters: the utterance's states depend on the tokens before it.
        alone_ids, alone_mask = batch([ROWS[0][3:]])
        assert not torch.allclose(model(alone_ids, alone_mask)[0], logits[0])
        single = model(ids[:1, :5], mask[:1, :5], pool[:1, :5])
        torch.testing.assert_close(single[0], logits[0], rtol=1e-4, atol=1e-5)


def test_runs_saved_before_the_shared_head_still_load(tiny_llama_dir, tmp_path):
    from abhinaya.weights.checkpoint import load_model_weights, save_tensors

    earlier = {"head.pooling.": "pooling.", "head.norm.": "head.0.", "head.fc1.": "head.2.", "head.fc2.": "head.5."}

    def old_name(key):
        for new, old in earlier.items():
            if key.startswith(new):
                return old + key[len(new) :]
        return key

    model = make_model(tiny_llama_dir, lora_layers=1, head_norm="running")
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    model.train()
    model(*batch(ROWS))  # moves the running statistics
    old_state = {old_name(k): v for k, v in model.trainable_state_dict().items()}
    assert {"pooling.attention.0.weight", "head.0.running_mean", "head.2.weight", "head.5.bias"} <= set(old_state)
    fresh = make_model(tiny_llama_dir, lora_layers=1, head_norm="running")
    load_model_weights(fresh, save_tensors(tmp_path / "model.safetensors", old_state), partial=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(*batch(ROWS)), model.eval()(*batch(ROWS)), rtol=0, atol=0)


def test_embed_then_classify_is_forward_and_pooled_mean_follows_the_norm(tiny_llama_dir):
    model = make_model(tiny_llama_dir, lora_layers=1, head_norm="running")
    ids, mask = batch(ROWS)
    model.train()
    model(ids, mask)
    model.eval()
    with torch.no_grad():
        pooled = model.embed(ids, mask)
        assert pooled.shape == (3, 2 * model.hidden_size)
        torch.testing.assert_close(model.classify(pooled), model(ids, mask), rtol=0, atol=0)
    assert model.pooled_mean() is model.head.norm.running_mean
    assert make_model(tiny_llama_dir, lora_layers=1, head_norm="layer").pooled_mean() is None
