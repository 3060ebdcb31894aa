import math

import pytest
import torch

from abhinaya.nn.pooling import lengths_to_mask
from abhinaya.nn.qformer import WindowQFormer, WindowQFormerConfig

TINY = dict(
    encoder_width=12,
    hidden_size=16,
    num_layers=2,
    num_heads=2,
    intermediate_size=32,
    window=17,
    stride=17,
    num_queries=1,
)


def tiny(**overrides) -> WindowQFormer:
    torch.manual_seed(0)
    return WindowQFormer(WindowQFormerConfig(**{**TINY, **overrides})).eval()


def test_paper_scale_defaults_are_salmonns():
    c = WindowQFormerConfig()
    assert (c.hidden_size, c.num_layers, c.num_heads, c.intermediate_size) == (768, 2, 12, 3072)
    assert (c.window, c.stride, c.num_queries, c.cross_attention_every) == (17, 17, 1, 1)
    assert c.window == round(1500 * 0.333333 / 30)
    assert (c.layer_norm_eps, c.dropout, c.attention_dropout) == (1e-12, 0.1, 0.1)


@pytest.mark.parametrize(
    "bad", [dict(num_heads=3), dict(window=0), dict(stride=0), dict(num_queries=0), dict(dropout=1.0)]
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        WindowQFormerConfig(**{**TINY, **bad})


def test_shapes_and_output_mask():
    model = tiny(num_queries=2)
    features = torch.randn(2, 40, 12)
    mask = lengths_to_mask(torch.tensor([40, 18]), 40)
    out, out_mask = model(features, mask)
    assert out.shape == (2, 3 * 2, 16)  # ceil(40 / 17) = 3 windows, 2 queries each
    assert out_mask.dtype == torch.bool
    assert out_mask.tolist() == [[True] * 6, [True] * 4 + [False] * 2]
    assert torch.count_nonzero(out[1, 4:]) == 0
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "window,stride,lengths",
    [
        (17, 17, [17, 18, 34, 1, 35, 0, 51]),
        (4, 2, [1, 2, 3, 4, 5, 9]),  # overlapping windows
        (2, 4, [1, 2, 3, 5, 8, 9]),  # gaps between windows
    ],
)
def test_window_counts(window, stride, lengths):
    model = tiny(window=window, stride=stride)
    frames = max(lengths)
    out, out_mask = model(torch.randn(len(lengths), frames, 12), lengths_to_mask(torch.tensor(lengths), frames))
    expected = [math.ceil(n / stride) for n in lengths]
    assert out_mask.sum(dim=1).tolist() == expected
    assert out.shape[1] == max(expected)
    for b, count in enumerate(expected):  # the counted windows come first
        assert out_mask[b, :count].all()


def test_only_windows_with_a_valid_frame_count_for_any_mask():
    model = tiny(window=4, stride=4)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, [1, 9]] = True  # windows 0 and 2
    mask[1, :5] = True  # windows 0 and 1
    _, out_mask = model(torch.randn(2, 16, 12), mask)
    assert out_mask.tolist() == [[True, False, True], [True, True, False]]


def test_empty_inputs():
    model = tiny()
    out, out_mask = model(torch.randn(2, 10, 12), torch.zeros(2, 10, dtype=torch.bool))
    assert out.shape == (2, 0, 16) and out_mask.shape == (2, 0)
    out, out_mask = model(torch.randn(3, 0, 12))
    assert out.shape == (3, 0, 16) and out_mask.shape == (3, 0)


def test_matches_fixed_windows_when_everything_is_valid():
    """With no padding, window k is frames [17k, 17k + 17), as in SALMONN's unfold."""
    model = tiny()
    features = torch.randn(2, 51, 12)
    out, out_mask = model(features)
    assert out_mask.all()
    windows = features.reshape(2 * 3, 17, 12)
    expected = model.forward_windows(windows).reshape(2, 3, 16)
    torch.testing.assert_close(out, expected)


def test_padding_invariance():
    model = tiny(num_queries=2)
    torch.manual_seed(1)
    short = torch.randn(1, 20, 12)  # two windows, the second partial (3 valid frames)
    long = torch.randn(1, 60, 12)
    with torch.no_grad():
        alone, alone_mask = model(short)
        batch = torch.cat([torch.cat([short, torch.randn(1, 40, 12) * 50], dim=1), long])
        mask = lengths_to_mask(torch.tensor([20, 60]), 60)
        batched, batched_mask = model(batch, mask)
        assert alone_mask.all() and alone.shape[1] == 4
        assert batched_mask[0].tolist() == [True] * 4 + [False] * 4
        torch.testing.assert_close(batched[0, :4], alone[0], rtol=1e-5, atol=1e-6)
        # NaN or inf in padded frames changes nothing.
        batch[0, 20:] = float("nan")
        batch[0, 25] = float("inf")
        again, _ = model(batch, mask)
        torch.testing.assert_close(again, batched)


def test_gradients_reach_queries_and_every_layer():
    model = tiny(num_queries=2).train()
    features = torch.randn(2, 30, 12, requires_grad=True)
    out, out_mask = model(features, lengths_to_mask(torch.tensor([30, 5]), 30))
    (out[out_mask] ** 2).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.count_nonzero(param.grad) > 0, name
    assert torch.count_nonzero(features.grad[1, 5:]) == 0  # padding gets no gradient


def test_cross_attention_every_other_layer():
    model = tiny(num_layers=3, cross_attention_every=2)
    assert [layer.cross_attention is not None for layer in model.layers] == [True, False, True]
    out, _ = model(torch.randn(1, 20, 12))
    assert out.shape == (1, 2, 16)


def test_parameter_names():
    names = {name for name, _ in tiny(num_layers=1).named_parameters()}
    linear = ["query", "key", "value", "output"]
    expected = {"query_tokens", "input_norm.weight", "input_norm.bias"}
    for block in ("self_attention", "cross_attention"):
        for part in linear + ["norm"]:
            expected |= {f"layers.0.{block}.{part}.weight", f"layers.0.{block}.{part}.bias"}
    for part in ("up", "down", "norm"):
        expected |= {f"layers.0.feed_forward.{part}.weight", f"layers.0.feed_forward.{part}.bias"}
    assert names == expected


def test_agrees_with_transformers_blip2_qformer():
    """An independent implementation of the same BLIP-2 query path gives the same outputs."""
    transformers = pytest.importorskip("transformers")
    model = tiny(num_queries=3)
    for p in model.parameters():  # non-trivial LayerNorms and biases
        torch.nn.init.normal_(p, std=0.3)
    config = transformers.Blip2QFormerConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        encoder_hidden_size=12,
        cross_attention_frequency=1,
        layer_norm_eps=1e-12,
        use_qformer_text_input=False,
    )
    reference = transformers.Blip2QFormerModel(config).eval()
    parts = {
        "attention.attention.query": "self_attention.query",
        "attention.attention.key": "self_attention.key",
        "attention.attention.value": "self_attention.value",
        "attention.output.dense": "self_attention.output",
        "attention.output.LayerNorm": "self_attention.norm",
        "crossattention.attention.query": "cross_attention.query",
        "crossattention.attention.key": "cross_attention.key",
        "crossattention.attention.value": "cross_attention.value",
        "crossattention.output.dense": "cross_attention.output",
        "crossattention.output.LayerNorm": "cross_attention.norm",
        "intermediate_query.dense": "feed_forward.up",
        "output_query.dense": "feed_forward.down",
        "output_query.LayerNorm": "feed_forward.norm",
    }
    ours = dict(model.named_parameters())
    state = {}
    for name in reference.state_dict():
        if name.startswith("layernorm."):
            state[name] = ours[name.replace("layernorm.", "input_norm.")]
            continue
        layer, rest = name.removeprefix("encoder.layer.").split(".", 1)
        module, leaf = rest.rsplit(".", 1)
        state[name] = ours[f"layers.{layer}.{parts[module]}.{leaf}"]
    reference.load_state_dict(state, strict=True)

    windows = torch.randn(4, 17, 12)
    window_mask = lengths_to_mask(torch.tensor([17, 3, 9, 1]), 17)
    with torch.no_grad():
        expected = reference(
            query_embeds=model.query_tokens.expand(4, -1, -1),
            encoder_hidden_states=windows,
            encoder_attention_mask=window_mask.long(),
        ).last_hidden_state
        got = model.forward_windows(windows, window_mask)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
