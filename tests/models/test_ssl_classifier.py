import dataclasses
import sys
import types

import pytest
import torch
from conftest import TINY_WAVLM, TINY_WHISPER

from abhinaya.models.ssl_classifier import SSLClassifier, SSLClassifierConfig
from abhinaya.nn.spec_augment import SpecAugmentConfig

WHISPER_TINY = {"model_type": "whisper", **TINY_WHISPER, "begin_suppress_tokens": None}
# Layer-normalised CNN and stable layer norm: the WavLM variant that takes an attention mask (as WavLM-Large).
WAVLM_TINY = {"model_type": "wavlm", **TINY_WAVLM}

# transformers' WavLM attention mixes a boolean padding mask with a float position bias; torch warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")

ENCODERS = {"whisper": WHISPER_TINY, "wavlm": WAVLM_TINY}


def make_model(kind="whisper", seed=0, **overrides):
    torch.manual_seed(seed)
    config = SSLClassifierConfig(encoder_config=dict(ENCODERS[kind]), attention_dim=16, head_hidden=16, **overrides)
    return SSLClassifier(config)


def batch(lengths, seed=0):
    generator = torch.Generator().manual_seed(seed)
    waves = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        waves[i, :n] = 0.1 * torch.randn(n, generator=generator)
    return waves, torch.tensor(lengths)


@pytest.mark.parametrize("kind", ["whisper", "wavlm"])
def test_output_shape(kind):
    model = make_model(kind).eval()
    waves, lengths = batch([8000, 5200])
    with torch.no_grad():
        logits = model(waves, lengths)
    assert logits.shape == (2, 8)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(("kind", "short", "long"), [("whisper", 8180, 20000), ("wavlm", 3333, 6001)])
def test_padding_does_not_change_logits(kind, short, long):
    model = make_model(kind).eval()
    waves, lengths = batch([short, long], seed=3)
    with torch.no_grad():
        together = model(waves, lengths)
        alone_short = model(waves[:1, :short], lengths[:1])
        alone_long = model(waves[1:], lengths[1:])
        # Garbage in the padding region must not matter either.
        noisy = waves.clone()
        noisy[0, short:] = torch.randn(long - short)
        together_noisy = model(noisy, lengths)
    torch.testing.assert_close(together[0], alone_short[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(together[1], alone_long[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(together_noisy, together, rtol=0, atol=1e-5)


def test_whisper_path_matches_stock_encoder_on_a_full_window():
    model = make_model("whisper").eval()
    mel = torch.randn(1, 80, 3000)
    with torch.no_grad():
        ours, mask = model.whisper_hidden_states_from_mel(mel, torch.tensor([3000]))
        stock = model.encoder(mel, output_hidden_states=True)
    assert mask.shape == (1, 1500) and mask.all()
    assert len(stock.hidden_states) == model.num_hidden_states == 3
    for i, expected in enumerate(stock.hidden_states):
        torch.testing.assert_close(ours[i], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[2], stock.last_hidden_state, rtol=1e-5, atol=1e-5)


def test_whisper_frames_are_true_length_not_30_s():
    model = make_model("whisper").eval()
    waves, lengths = batch([16000, 9000])
    with torch.no_grad():
        states, mask = model.hidden_states(waves, lengths)
    # 16000 samples -> 100 mel frames -> 50 encoder frames; 9000 -> 56 -> 28.
    assert mask.shape == (2, 50)
    assert mask.sum(dim=1).tolist() == [50, 28]
    assert all(s.shape == (2, 50, 32) for s in states.values())


def test_whisper_input_over_30_s_is_an_error_or_cropped():
    thirty = 30 * 16000
    waves, lengths = batch([thirty + 160, 16000], seed=7)
    model = make_model("whisper").eval()
    with pytest.raises(ValueError, match="30 s"):
        model(waves, lengths)
    # Exactly 30 s is accepted.
    with torch.no_grad():
        model(waves[:1, :thirty], torch.tensor([thirty]))

    cropping = make_model("whisper", long_input="crop").eval()
    with torch.no_grad():
        cropped = cropping(waves, lengths)
        first_30_s = cropping(waves[:1, :thirty], torch.tensor([thirty]))
    torch.testing.assert_close(cropped[0], first_30_s[0], rtol=0, atol=1e-5)


def _grad_status(model, waves, lengths):
    attention = getattr(model.head.pooling, "attention", None)
    if attention is not None:
        # A new attentive pooling starts uniform (zero scorer), where its first layer has no gradient yet by design;
        # move it off uniform as one training step would, so every trainable parameter is checked.
        torch.nn.init.normal_(attention[2].weight, std=0.1)
    model.train()
    model.zero_grad()
    model(waves, lengths).sum().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.any(p.grad != 0), f"no gradient reached trainable {name}"
        else:
            assert p.grad is None, f"frozen {name} received a gradient"
    return {name: p.requires_grad for name, p in model.named_parameters()}


def _trainable(status, prefix):
    values = [v for name, v in status.items() if name.startswith(prefix)]
    assert values, prefix
    return set(values)


@pytest.mark.parametrize(
    ("kind", "overrides", "frozen", "trainable"),
    [
        ("whisper", {"freeze": "none"}, [], ["encoder.conv1.", "encoder.layers.0.", "encoder.layer_norm."]),
        ("whisper", {}, ["encoder.conv1.", "encoder.conv2.", "encoder.embed_positions."], ["encoder.layers.0."]),
        (
            "whisper",
            {"freeze_layers": 1},
            ["encoder.conv1.", "encoder.layers.0."],
            ["encoder.layers.1.", "encoder.layer_norm."],
        ),
        ("whisper", {"freeze": "encoder"}, ["encoder."], ["layer_weights", "head.pooling.", "head."]),
        ("wavlm", {}, ["encoder.feature_extractor."], ["encoder.feature_projection.", "encoder.encoder.layers.0."]),
        (
            "wavlm",
            {"freeze_layers": 1},
            ["encoder.feature_extractor.", "encoder.feature_projection.", "encoder.encoder.layers.0."],
            ["encoder.encoder.layers.1.", "encoder.encoder.layer_norm."],
        ),
        ("wavlm", {"freeze": "encoder"}, ["encoder."], ["head."]),
    ],
)
def test_gradients_reach_exactly_the_trainable_parameters(kind, overrides, frozen, trainable):
    model = make_model(kind, **overrides)
    waves, lengths = batch([6000, 4000])
    status = _grad_status(model, waves, lengths)
    for prefix in frozen:
        assert _trainable(status, prefix) == {False}, prefix
    for prefix in trainable + ["head.", "head.pooling."]:
        assert _trainable(status, prefix) == {True}, prefix
    # Frozen parts stay in eval mode while the model trains.
    for name, module in model.named_modules():
        params = list(module.parameters())
        if name.startswith("encoder") and params and not any(p.requires_grad for p in params):
            assert not module.training, name
    assert model.head.training


def test_layers_above_the_selected_layer_are_frozen_and_not_run():
    model = make_model("whisper", layer=1)
    assert model.layer_weights is None
    assert model.layer_indices == [1]
    assert not any(p.requires_grad for p in model.encoder.layers[1].parameters())
    assert not any(p.requires_grad for p in model.encoder.layer_norm.parameters())
    waves, lengths = batch([6000, 4000])
    _grad_status(model, waves, lengths)


def test_selected_layer_equals_a_saturated_weighted_sum():
    for kind in ("whisper", "wavlm"):
        mixed = make_model(kind, freeze="none").eval()
        with torch.no_grad():
            mixed.layer_weights.copy_(torch.tensor([-1e4, 1e4, -1e4]))
        single = SSLClassifier(dataclasses.replace(mixed.config, layer=1)).eval()
        state = {k: v for k, v in mixed.state_dict().items() if k != "layer_weights"}
        single.load_state_dict(state, strict=True)
        waves, lengths = batch([7000, 5000])
        with torch.no_grad():
            torch.testing.assert_close(mixed(waves, lengths), single(waves, lengths), rtol=1e-5, atol=1e-5)


def test_weighted_sum_uses_softmax_of_layer_weights():
    model = make_model("whisper", layers=[0, -1]).eval()
    assert model.layer_indices == [0, 2]
    assert model.layer_weights.shape == (2,)
    with torch.no_grad():
        model.layer_weights.copy_(torch.tensor([0.3, -0.2]))
        waves, lengths = batch([5000])
        states, _ = model.hidden_states(waves, lengths)
        w = torch.softmax(torch.tensor([0.3, -0.2]), dim=0)
        torch.testing.assert_close(model.mix_layers(states), w[0] * states[0] + w[1] * states[2])


def test_mean_std_pooling_option():
    model = make_model("whisper", pooling="mean_std").eval()
    assert not list(model.head.pooling.parameters())
    with torch.no_grad():
        assert model(*batch([4000, 3000])).shape == (2, 8)


def test_head_norm_standardises_the_pooled_vector_with_training_statistics():
    plain = make_model("whisper", seed=4)
    normed = make_model("whisper", seed=4, head_norm="running")
    # The head keeps its parameter names, so runs saved without a head norm still load.
    assert {k for k in plain.state_dict() if k.startswith("head.")} == {
        k for k in normed.state_dict() if k.startswith("head.") and not k.startswith("head.norm.")
    }
    assert {k for k in normed.state_dict() if k.startswith("head.norm.")} >= {
        "head.norm.running_mean", "head.norm.running_var"
    }
    waves, lengths = batch([6000, 5000, 4000, 3000], seed=5)
    normed.train()
    with torch.no_grad():
        normed(waves, lengths)
    normed.eval()
    with torch.no_grad():
        pooled = normed.embed(waves, lengths)
        # One batch seen: the running mean is that batch's mean of the pooled vectors.
        torch.testing.assert_close(normed.head.norm.running_mean, pooled.mean(dim=0), rtol=1e-4, atol=1e-5)
        expected = normed.head.fc2(normed.head.activation(normed.head.fc1(normed.head.norm(pooled))))
        torch.testing.assert_close(normed(waves, lengths), expected)
        # At inference each row is normalised alone: batch composition does not matter.
        torch.testing.assert_close(normed(waves[:1, :6000], lengths[:1])[0], expected[0], rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="head_norm"):
        SSLClassifierConfig(head_norm="instance")


@pytest.mark.parametrize("kind", ["whisper", "wavlm"])
def test_param_groups_cover_every_trainable_parameter_once(kind):
    model = make_model(kind, freeze_layers=1)
    groups = model.param_groups(encoder_lr=1e-5, head_lr=1e-3, weight_decay=0.01)
    seen = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert len(seen) == len(set(seen))
    assert set(seen) == set(trainable)
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    for g in groups:
        in_encoder = {id(p) in encoder_ids for p in g["params"]}
        assert in_encoder == {g["name"].startswith("encoder")}
        assert g["lr"] == (1e-5 if g["name"].startswith("encoder") else 1e-3)
        assert g["weight_decay"] == (0.0 if g["name"].endswith("no_decay") else 0.01)
    torch.optim.AdamW(groups)


def test_state_dict_round_trip_is_strict():
    source = make_model("whisper", seed=1).eval()
    target = make_model("whisper", seed=2).eval()
    state = source.state_dict()
    assert not any("mel_filters" in k or "window" in k for k in state)
    target.load_state_dict(state, strict=True)
    waves, lengths = batch([5000, 3000])
    with torch.no_grad():
        torch.testing.assert_close(source(waves, lengths), target(waves, lengths))
    with pytest.raises(RuntimeError):
        target.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")}, strict=True)


def test_from_pretrained_encoder_loads_encoder_weights(tmp_path, monkeypatch):
    from transformers import AutoConfig, WhisperModel

    kwargs = {k: v for k, v in WHISPER_TINY.items() if k != "model_type"}
    torch.manual_seed(11)
    pretrained = WhisperModel(AutoConfig.for_model("whisper", **kwargs))
    pretrained.save_pretrained(tmp_path / "tiny-whisper")

    fake_cache = types.ModuleType("abhinaya.weights.cache")
    fake_cache.resolve_model_path = lambda name: tmp_path / name
    monkeypatch.setitem(sys.modules, "abhinaya.weights.cache", fake_cache)

    model = SSLClassifier.from_pretrained_encoder(SSLClassifierConfig(encoder="tiny-whisper", num_labels=3))
    assert model.encoder_type == "whisper"
    assert model.config.encoder_config["d_model"] == 32
    expected = pretrained.encoder.state_dict()
    for key, value in model.encoder.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)

    rebuilt = SSLClassifier(model.config)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert rebuilt(*batch([3000])).shape == (1, 3)


def test_encoder_overrides_reach_the_pretrained_encoder_and_its_rebuild(tmp_path, monkeypatch):
    from transformers import AutoConfig, WhisperModel

    kwargs = {k: v for k, v in WHISPER_TINY.items() if k != "model_type"}
    WhisperModel(AutoConfig.for_model("whisper", **kwargs)).save_pretrained(tmp_path / "tiny-whisper")
    fake_cache = types.ModuleType("abhinaya.weights.cache")
    fake_cache.resolve_model_path = lambda name: tmp_path / name
    monkeypatch.setitem(sys.modules, "abhinaya.weights.cache", fake_cache)

    overrides = {"dropout": 0.25, "attention_dropout": 0.5}
    config = SSLClassifierConfig(encoder="tiny-whisper", num_labels=3, freeze_layers=1, encoder_overrides=overrides)
    model = SSLClassifier.from_pretrained_encoder(config)
    rebuilt = SSLClassifier(model.config)
    for built in (model, rebuilt):
        assert built.encoder.config.dropout == 0.25
        assert all(layer.dropout == 0.25 for layer in built.encoder.layers)
        assert all(layer.self_attn.dropout == 0.5 for layer in built.encoder.layers)
    # The stored pretrained architecture is untouched; the overrides are kept beside it.
    assert model.config.encoder_config["dropout"] == 0.0
    rebuilt.load_state_dict(model.state_dict(), strict=True)

    # The encoder's dropout acts in training only (the head's own dropout is left out of this by reading the
    # encoder's hidden states).
    waves, lengths = batch([3200, 2400])
    top = max(model.layer_indices)
    with torch.no_grad():
        model.eval()
        states = [model.hidden_states(waves, lengths)[0][top] for _ in range(2)]
        torch.testing.assert_close(states[0], states[1])
        model.train()
        first, second = model.hidden_states(waves, lengths)[0][top], model.hidden_states(waves, lengths)[0][top]
    assert not torch.allclose(first, second)


def test_unknown_encoder_overrides_are_errors():
    with pytest.raises(ValueError, match=r"encoder_overrides: \['dropuot'\] are not settings of a whisper config"):
        make_model("whisper", encoder_overrides={"dropuot": 0.1})


@pytest.mark.parametrize(
    "encoder_config",
    [
        {"model_type": "wav2vec2", **{k: v for k, v in WAVLM_TINY.items() if k not in ("model_type",)},
         "feat_extract_norm": "group", "do_stable_layer_norm": False},
        {"model_type": "hubert", **{k: v for k, v in WAVLM_TINY.items() if k not in ("model_type",)}},
    ],
    ids=["wav2vec2-group-norm", "hubert-layer-norm"],
)
def test_other_wav2vec2_family_encoders_run(encoder_config):
    model = SSLClassifier(SSLClassifierConfig(encoder_config=encoder_config, attention_dim=8, head_hidden=8)).eval()
    with torch.no_grad():
        assert model(*batch([4000, 2500])).shape == (2, 8)


def test_config_validation():
    with pytest.raises(ValueError, match="pooling"):
        SSLClassifierConfig(pooling="max")
    with pytest.raises(ValueError, match="freeze"):
        SSLClassifierConfig(freeze="cnn")
    with pytest.raises(ValueError, match="either layer"):
        SSLClassifierConfig(layer=1, layers=[0, 1])
    with pytest.raises(ValueError, match="encoder_config"):
        SSLClassifier(SSLClassifierConfig())
    with pytest.raises(ValueError, match="out of range"):
        make_model("whisper", layer=3)
    with pytest.raises(ValueError, match="freeze_layers"):
        make_model("whisper", freeze_layers=3)


def test_bad_lengths_are_errors():
    model = make_model("whisper").eval()
    waves, _ = batch([4000, 4000])
    with pytest.raises(ValueError, match="exceed"):
        model(waves, torch.tensor([4000, 4001]))
    with pytest.raises(ValueError, match="at least one sample"):
        model(waves, torch.tensor([4000, 0]))
    with torch.no_grad():
        assert model(waves).shape == (2, 8)


def test_spec_augment_masks_whisper_input_in_training_only(monkeypatch):
    config = {"time_masks": 2, "time_width": 20, "freq_masks": 2, "freq_width": 8}
    plain = make_model("whisper", seed=6)
    augmented = make_model("whisper", seed=6, spec_augment=SpecAugmentConfig(**config))
    waves, lengths = batch([8000, 6000], seed=7)
    plain.eval()
    augmented.eval()
    with torch.no_grad():
        torch.testing.assert_close(augmented(waves, lengths), plain(waves, lengths))

    seen = []
    original = SSLClassifier.whisper_hidden_states_from_mel

    def record(self, mel, frames):
        seen.append(mel.clone())
        return original(self, mel, frames)

    monkeypatch.setattr(SSLClassifier, "whisper_hidden_states_from_mel", record)
    plain.train()
    augmented.train()
    plain(waves, lengths)
    augmented(waves, lengths)
    clean, masked = seen
    assert not torch.equal(clean, masked)
    # Only whole frame columns or mel bands change, each to the utterance's mean.
    changed = masked != clean
    frames = plain.log_mel.num_frames(lengths)
    for i, f in enumerate(frames.tolist()):
        cells = changed[i, :, :f]
        assert torch.equal(cells, cells.all(dim=0, keepdim=True) | cells.all(dim=1, keepdim=True))
        assert not changed[i, :, f:].any()


def test_spec_augment_on_a_wav2vec2_family_encoder_is_an_error():
    with pytest.raises(ValueError, match="mask_time_prob"):
        make_model("wavlm", spec_augment=SpecAugmentConfig(time_masks=1))


def test_runs_saved_before_the_shared_head_still_load(tmp_path):
    from abhinaya.weights.checkpoint import load_model_weights, save_tensors

    earlier = {"head.pooling.": "pooling.", "head.norm.": "head_norm.", "head.fc1.": "head.0.", "head.fc2.": "head.3."}

    def old_name(key):
        for new, old in earlier.items():
            if key.startswith(new):
                return old + key[len(new) :]
        return key

    source = make_model("whisper", seed=1, head_norm="running").eval()
    old_state = {old_name(k): v for k, v in source.state_dict().items()}
    assert {"pooling.attention.0.weight", "head_norm.running_mean", "head.0.weight", "head.3.bias"} <= set(old_state)
    waves, lengths = batch([5000, 3000])
    target = make_model("whisper", seed=2, head_norm="running").eval()
    target.load_state_dict(old_state, strict=True)
    from_file = make_model("whisper", seed=3, head_norm="running").eval()
    load_model_weights(from_file, save_tensors(tmp_path / "model.safetensors", old_state))
    with torch.no_grad():
        expected = source(waves, lengths)
        torch.testing.assert_close(target(waves, lengths), expected, rtol=0, atol=0)
        torch.testing.assert_close(from_file(waves, lengths), expected, rtol=0, atol=0)
