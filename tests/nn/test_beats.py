import argparse

import numpy as np
import pytest
import torch

from abhinaya.nn.beats import (
    IGNORED_OFFICIAL_KEYS,
    BEATs,
    BEATsConfig,
    kaldi_mel_banks,
    load_beats_checkpoint,
    num_fbank_frames,
    relative_position_buckets,
)

# The cfg stored in the official BEATs_iter3+ checkpoints (the fine-tuned ones say finetuned_model True).
OFFICIAL_ITER3_CFG = {
    "encoder_layers": 12, "encoder_embed_dim": 768, "encoder_ffn_embed_dim": 3072, "encoder_attention_heads": 12,
    "activation_fn": "gelu", "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0,
    "encoder_layerdrop": 0.05, "dropout_input": 0.0, "layer_norm_first": False, "conv_bias": False, "conv_pos": 128,
    "conv_pos_groups": 16, "relative_position_embedding": True, "num_buckets": 320, "max_distance": 800,
    "gru_rel_pos": True, "deep_norm": True, "input_patch_size": 16, "layer_wise_gradient_decay_ratio": 0.6,
    "embed_dim": 512, "finetuned_model": False, "predictor_dropout": 0.0, "predictor_class": 527,
}  # fmt: skip


def tiny_model(seed: int = 0, **overrides) -> BEATs:
    torch.manual_seed(seed)
    model = BEATs(BEATsConfig.tiny(**overrides)).eval()
    with torch.no_grad():  # gates and norms away from their initial values, as in a trained model
        for name, param in model.named_parameters():
            if "grep_a" in name or "layer_norm" in name or "weight_g" in name:
                param.add_(0.3 * torch.randn_like(param))
    return model


def official_tiny_cfg(**overrides) -> dict:
    config = BEATsConfig.tiny()
    cfg = {key: getattr(config, key) for key in OFFICIAL_ITER3_CFG if key not in IGNORED_OFFICIAL_KEYS}
    cfg.update(encoder_layerdrop=0.05, layer_wise_gradient_decay_ratio=0.6)
    cfg.update(overrides)
    return cfg


def official_key_names(layers: int, finetuned: bool = False) -> set[str]:
    """State-dict names of the official BEATs model (microsoft/unilm beats/BEATs.py + backbone.py)."""
    names = {"patch_embedding.weight", "layer_norm.weight", "layer_norm.bias", "post_extract_proj.weight",
             "post_extract_proj.bias", "encoder.pos_conv.0.weight_g", "encoder.pos_conv.0.weight_v",
             "encoder.pos_conv.0.bias", "encoder.layer_norm.weight", "encoder.layer_norm.bias"}  # fmt: skip
    for i in range(layers):
        prefix = f"encoder.layers.{i}."
        for module in ("self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj", "self_attn.out_proj",
                       "self_attn.grep_linear", "self_attn_layer_norm", "fc1", "fc2", "final_layer_norm"):  # fmt: skip
            names |= {prefix + module + ".weight", prefix + module + ".bias"}
        names |= {prefix + "self_attn.grep_a", prefix + "self_attn.relative_attention_bias.weight"}
    if finetuned:
        names |= {"predictor.weight", "predictor.bias"}
    return names


def numpy_kaldi_fbank(wave: np.ndarray, num_bins: int = 128) -> np.ndarray:
    """Kaldi compute-fbank-feats defaults (float64, frame by frame) of a waveform already scaled to int16 range."""
    mel = lambda hz: 1127.0 * np.log(1.0 + hz / 700.0)  # noqa: E731
    edges = np.linspace(mel(20.0), mel(8000.0), num_bins + 2)
    bin_mels = mel(np.arange(256) * 16000.0 / 512)
    bank = np.zeros((num_bins, 257))
    for m in range(num_bins):
        left, centre, right = edges[m], edges[m + 1], edges[m + 2]
        for i, b in enumerate(bin_mels):
            if left < b < right:
                bank[m, i] = (b - left) / (centre - left) if b <= centre else (right - b) / (right - centre)
    n = np.arange(400)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * n / 399)) ** 0.85
    rows = []
    for start in range(0, len(wave) - 400 + 1, 160):
        frame = wave[start : start + 400].astype(np.float64)
        frame = frame - frame.mean()
        emphasised = np.empty_like(frame)
        emphasised[0] = frame[0] * (1 - 0.97)
        emphasised[1:] = frame[1:] - 0.97 * frame[:-1]
        spectrum = np.abs(np.fft.rfft(emphasised * window, n=512)) ** 2
        rows.append(np.log(np.maximum(bank @ spectrum, np.finfo(np.float32).eps)))
    return np.stack(rows)


def test_defaults_are_the_official_iter3_configuration():
    assert BEATsConfig.from_official_cfg(OFFICIAL_ITER3_CFG) == BEATsConfig()
    config = BEATsConfig()
    assert (config.encoder_layers, config.encoder_embed_dim, config.encoder_attention_heads) == (12, 768, 12)
    assert (config.input_patch_size, config.embed_dim, config.num_mel_bins) == (16, 512, 128)
    assert (config.num_buckets, config.max_distance, config.gru_rel_pos) == (320, 800, True)
    assert (config.deep_norm, config.layer_norm_first) == (True, False)
    assert config.min_samples == 2800


def test_from_official_cfg_rejects_unknown_and_missing_keys():
    with pytest.raises(ValueError, match="unknown keys.*'rotary'"):
        BEATsConfig.from_official_cfg({**OFFICIAL_ITER3_CFG, "rotary": True})
    cfg = dict(OFFICIAL_ITER3_CFG)
    del cfg["max_distance"]
    with pytest.raises(ValueError, match="lacks architecture keys.*max_distance"):
        BEATsConfig.from_official_cfg(cfg)
    cfg = dict(OFFICIAL_ITER3_CFG)
    del cfg["predictor_class"], cfg["finetuned_model"]
    assert BEATsConfig.from_official_cfg(cfg).finetuned_model is False


def test_state_dict_names_are_the_official_ones():
    model = BEATs(BEATsConfig.tiny())
    assert set(model.state_dict()) == official_key_names(2)
    assert set(BEATs(BEATsConfig.tiny(finetuned_model=True)).state_dict()) == official_key_names(2, finetuned=True)
    layers = model.encoder.layers
    assert layers[1].self_attn.relative_attention_bias is layers[0].self_attn.relative_attention_bias
    state = model.state_dict()
    assert state["encoder.pos_conv.0.weight_g"].shape == (1, 1, 16)
    assert state["encoder.pos_conv.0.weight_v"].shape == (32, 8, 16)
    assert state["patch_embedding.weight"].shape == (16, 1, 16, 16)


def test_positional_conv_matches_torch_weight_norm():
    torch.manual_seed(0)
    model = tiny_model()
    conv = torch.nn.Conv1d(32, 32, 16, padding=8, groups=4)
    conv = torch.nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
    ours = model.encoder.pos_conv[0]
    with torch.no_grad():
        conv.parametrizations.weight.original0.copy_(ours.weight_g)
        conv.parametrizations.weight.original1.copy_(ours.weight_v)
        conv.bias.copy_(ours.bias)
    x = torch.randn(2, 32, 11)
    torch.testing.assert_close(ours(x), conv(x)[..., :-1], rtol=1e-5, atol=1e-6)


def test_fbank_matches_independent_kaldi_formulas():
    rng = np.random.default_rng(0)
    t = np.arange(5000) / 16000
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size) + 0.01  # a DC offset too
    model = tiny_model()
    fbank, frame_mask = model.compute_fbank(torch.tensor(wave, dtype=torch.float32)[None], torch.tensor([5000]))
    expected = numpy_kaldi_fbank(wave.astype(np.float32) * 2.0**15)
    expected = (expected - 15.41663) / (2 * 6.55582)
    assert fbank.shape == (1, 29, 128) and frame_mask.all()
    np.testing.assert_allclose(fbank[0].numpy(), expected, atol=2e-4)


def test_fbank_matches_torchaudio_when_available():
    kaldi = pytest.importorskip("torchaudio.compliance.kaldi")
    wave = 0.1 * torch.randn(1, 6000)
    expected = kaldi.fbank(wave * 2**15, num_mel_bins=128, sample_frequency=16000, frame_length=25, frame_shift=10)
    fbank, _ = tiny_model().compute_fbank(wave, torch.tensor([6000]))
    torch.testing.assert_close(fbank[0], (expected - 15.41663) / (2 * 6.55582), atol=1e-4, rtol=1e-4)


def test_mel_banks_are_triangles_without_the_nyquist_bin():
    banks = kaldi_mel_banks(128)
    assert banks.shape == (128, 257)
    assert torch.all(banks[:, -1] == 0) and torch.all(banks >= 0) and torch.all(banks <= 1)
    # At 128 bins the lowest triangles are narrower than an FFT bin (31.25 Hz): Kaldi's filter 3 catches none and
    # its output sits at the log floor, in BEATs as in Kaldi.
    assert (banks.sum(dim=1) == 0).nonzero().flatten().tolist() == [3]


def test_relative_position_buckets_follow_the_official_scheme():
    offsets = torch.tensor([0, -1, 1, -79, 79, -80, -160, 160, -799, -10000, 10000])
    buckets = relative_position_buckets(offsets, num_buckets=320, max_distance=800)
    # 80 exact distances per side; beyond, 80 + floor(log(d / 80) / log(10) * 80), capped at 159; +160 if positive
    assert buckets.tolist() == [0, 1, 161, 79, 239, 80, 104, 264, 159, 159, 319]


def test_output_shapes_and_mask():
    model = tiny_model()
    lengths = torch.tensor([2800, 7839, 8000])
    waves = 0.1 * torch.randn(3, 8000)
    features, mask = model(waves, lengths)
    frames = num_fbank_frames(lengths)
    assert frames.tolist() == [16, 47, 48]
    assert features.shape == (3, 24, 32) and mask.shape == (3, 24) and mask.dtype == torch.bool
    assert mask.sum(dim=1).tolist() == [8, 16, 24]
    assert torch.equal(mask, torch.arange(24)[None] < mask.sum(dim=1, keepdim=True))  # a prefix of each row
    assert torch.all(features[~mask] == 0) and torch.isfinite(features).all()
    assert model.num_positions(lengths).tolist() == [8, 16, 24]


def test_patch_order_is_time_major_with_frequency_patches_consecutive():
    model = tiny_model()
    fbank = torch.randn(1, 48, 128)
    frame_mask = torch.ones(1, 48, dtype=torch.bool)
    before, _ = model.embed_patches(fbank, frame_mask)
    changed = fbank.clone()
    changed[0, 16:32, 80:96] += 1.0  # time step 1, frequency band 5
    after, _ = model.embed_patches(changed, frame_mask)
    moved = (after - before).abs().sum(dim=-1)[0]
    assert moved.nonzero().flatten().tolist() == [1 * 8 + 5]


def test_padding_invariance():
    model = tiny_model()
    torch.manual_seed(1)
    short, long = 0.1 * torch.randn(6123), 0.1 * torch.randn(9600)  # 36 and 58 fbank frames
    alone, alone_mask = model(short[None], torch.tensor([6123]))
    batch = torch.stack([torch.cat([short, 5.0 * torch.randn(9600 - 6123)]), long])  # noisy padding
    features, mask = model(batch, torch.tensor([6123, 9600]))
    valid = int(alone_mask.sum())
    assert valid == 16 and int(mask[0].sum()) == valid and alone.shape[1] == valid and features.shape[1] == 24
    torch.testing.assert_close(features[0, :valid], alone[0], atol=1e-5, rtol=1e-5)
    long_alone, _ = model(long[None])
    torch.testing.assert_close(features[1], long_alone[0], atol=1e-5, rtol=1e-5)


def test_too_short_input_is_a_clear_error():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"16 fbank frames \(2800 samples.*rows \[1\] have \[2799\]"):
        model(torch.zeros(2, 3000), torch.tensor([3000, 2799]))
    with pytest.raises(ValueError, match="exceed"):
        model(torch.zeros(1, 3000), torch.tensor([3001]))


def test_eval_mode_is_deterministic_and_freeze_stops_gradients():
    model = tiny_model(dropout=0.1, attention_dropout=0.1)
    assert model.freeze() is model
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    waves = 0.1 * torch.randn(2, 6000)
    first, _ = model(waves, torch.tensor([6000, 5000]))
    second, _ = model(waves, torch.tensor([6000, 5000]))
    assert torch.equal(first, second) and not first.requires_grad


def reference_encoder(model: BEATs, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """The official encoder's arithmetic, written out: (T, B, C) layout, queries pre-divided by 32 and the scores
    shifted by their row maximum, bias gate from the query reshaped to (..., 2, 4), post-LN with deep-norm alpha."""
    config, p = model.config, dict(model.state_dict())
    B, T, C = x.shape
    H, hd, alpha = config.encoder_attention_heads, C // config.encoder_attention_heads, 32
    x = x.clone()
    x[padding] = 0
    v, g = p["encoder.pos_conv.0.weight_v"], p["encoder.pos_conv.0.weight_g"]
    weight = g * v / v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()
    conv_bias, pad, groups = p["encoder.pos_conv.0.bias"], config.conv_pos // 2, config.conv_pos_groups
    conv = torch.nn.functional.conv1d(x.transpose(1, 2), weight, conv_bias, padding=pad, groups=groups)[..., :-1]
    x = torch.nn.functional.layer_norm(x + torch.nn.functional.gelu(conv).transpose(1, 2), (C,),
                                       p["encoder.layer_norm.weight"], p["encoder.layer_norm.bias"])  # fmt: skip
    x = x.transpose(0, 1)
    rel = torch.arange(T)[None, :] - torch.arange(T)[:, None]
    table = p["encoder.layers.0.self_attn.relative_attention_bias.weight"]
    bias = table[relative_position_buckets(rel, config.num_buckets, config.max_distance)].permute(2, 0, 1)
    bias = bias.unsqueeze(0).repeat(B, 1, 1, 1).view(B * H, T, T)
    lin = lambda name, y: y @ p[name + ".weight"].T + p[name + ".bias"]  # noqa: E731
    ln = lambda name, y: torch.nn.functional.layer_norm(y, (C,), p[name + ".weight"], p[name + ".bias"])  # noqa: E731
    deep = (2 * config.encoder_layers) ** 0.25
    for i in range(config.encoder_layers):
        a = f"encoder.layers.{i}.self_attn"
        q = lin(a + ".q_proj", x) * (hd**-0.5) / alpha
        k, v = lin(a + ".k_proj", x), lin(a + ".v_proj", x)
        q, k, v = (t.contiguous().view(T, B * H, hd).transpose(0, 1) for t in (q, k, v))
        scores = torch.bmm(q, k.transpose(1, 2))
        scores = alpha * (scores - scores.amax(dim=-1, keepdim=True))
        scores = scores.view(B, H, T, T).masked_fill(padding[:, None, None, :], float("-inf")).view(B * H, T, T)
        raw_query = q.view(B, H, T, hd) / (hd**-0.5) * alpha  # undo the scaling: the gate sees q_proj's output
        eight = lin(a + ".grep_linear", raw_query)
        gate_a = torch.sigmoid(eight[..., :4].sum(-1, keepdim=True))
        gate_b = torch.sigmoid(eight[..., 4:].sum(-1, keepdim=True))
        gate = gate_a * (gate_b * p[a + ".grep_a"] - 1.0) + 2.0
        scores = scores + gate.reshape(B * H, T, 1) * bias
        out = torch.bmm(torch.softmax(scores, dim=-1), v).transpose(0, 1).contiguous().view(T, B, C)
        x = ln(f"encoder.layers.{i}.self_attn_layer_norm", x * deep + lin(a + ".out_proj", out))
        hidden = torch.nn.functional.gelu(lin(f"encoder.layers.{i}.fc1", x))
        x = ln(f"encoder.layers.{i}.final_layer_norm", x * deep + lin(f"encoder.layers.{i}.fc2", hidden))
    return x.transpose(0, 1)


def test_encoder_matches_the_official_formulation():
    model = tiny_model()
    x = torch.randn(2, 24, 32)
    padding = torch.arange(24)[None] >= torch.tensor([[24], [16]])
    with torch.no_grad():
        ours = model.encoder(x, padding)
        expected = reference_encoder(model, x, padding)
    torch.testing.assert_close(ours[~padding], expected[~padding], atol=1e-5, rtol=1e-4)


def save_official_checkpoint(path, model: BEATs, cfg: dict, state: dict | None = None) -> None:
    torch.save({"cfg": cfg, "model": state if state is not None else dict(model.state_dict())}, path)


@pytest.mark.parametrize("finetuned", [False, True])
def test_load_official_layout_checkpoint(tmp_path, finetuned):
    source = tiny_model(seed=3, finetuned_model=finetuned)
    path = tmp_path / "BEATs_tiny.pt"
    save_official_checkpoint(path, source, official_tiny_cfg(finetuned_model=finetuned))
    loaded = load_beats_checkpoint(path)
    assert not loaded.training and (loaded.predictor is not None) == finetuned
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    waves = 0.1 * torch.randn(2, 6000)
    features, mask = loaded(waves, torch.tensor([6000, 4000]))
    assert features.shape == (2, 16, 32)
    torch.testing.assert_close(features, source(waves, torch.tensor([6000, 4000]))[0])
    if finetuned:
        assert loaded.audioset_logits(features, mask).shape == (2, 5)


def test_load_rejects_renamed_missing_and_unexpected_keys(tmp_path):
    source = tiny_model()
    state = dict(source.state_dict())
    state["encoder.pos_conv.0.weight"] = state.pop("encoder.pos_conv.0.weight_v")  # a renamed key
    del state["encoder.layers.1.fc2.bias"]
    path = tmp_path / "bad.pt"
    save_official_checkpoint(path, source, official_tiny_cfg(), state)
    with pytest.raises(ValueError) as error:
        load_beats_checkpoint(path)
    message = str(error.value)
    assert "missing keys ['encoder.layers.1.fc2.bias', 'encoder.pos_conv.0.weight_v']" in message
    assert "unexpected keys ['encoder.pos_conv.0.weight']" in message

    with_head = dict(tiny_model(finetuned_model=True).state_dict())
    save_official_checkpoint(path, source, official_tiny_cfg(), with_head)  # cfg not fine-tuned, head present
    with pytest.raises(ValueError, match=r"unexpected keys \['predictor.bias', 'predictor.weight'\]"):
        load_beats_checkpoint(path)


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="'cfg' and 'model'"):
        load_beats_checkpoint(path)
    torch.save({"cfg": argparse.Namespace(encoder_layers=2), "model": {}}, path)  # a pickled object, not plain data
    with pytest.raises(ValueError, match="objects other than tensors"):
        load_beats_checkpoint(path)
