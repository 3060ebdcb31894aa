import pytest
import torch

from abhinaya.nn.spec_augment import SpecAugmentConfig, spec_augment


def features(frames, channels=20, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.zeros(len(frames), channels, max(frames))
    for i, f in enumerate(frames):
        x[i, :, :f] = torch.randn(channels, f, generator=generator) + 1.0
    return x, torch.tensor(frames)


def test_off_by_default_returns_the_input_unchanged():
    x, frames = features([50, 30])
    assert not SpecAugmentConfig().enabled
    assert spec_augment(x, frames, SpecAugmentConfig()) is x


def test_masks_stay_inside_the_valid_frames_and_take_the_utterance_mean():
    x, frames = features([200, 120, 60], seed=1)
    config = SpecAugmentConfig(time_masks=2, time_width=30, max_time_fraction=0.2, freq_masks=2, freq_width=4)
    before = x.clone()
    y = spec_augment(x, frames, config, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(x, before)  # the input is not modified
    assert not torch.equal(y, x)
    for i, f in enumerate(frames.tolist()):
        # Padding beyond the utterance is untouched.
        assert torch.equal(y[i, :, f:], x[i, :, f:])
        changed = y[i, :, :f] != x[i, :, :f]
        mean = x[i, :, :f].mean()
        torch.testing.assert_close(y[i, :, :f][changed], mean.expand(int(changed.sum())))
        # A masked cell lies in a fully masked frame column or a fully masked channel row.
        masked_columns = changed.all(dim=0)
        masked_rows = changed.all(dim=1)
        assert torch.equal(changed, masked_columns.unsqueeze(0) | masked_rows.unsqueeze(1))
        # Two spans of at most min(30, 0.2 * f) frames; two bands of at most 4 channels.
        assert int(masked_columns.sum()) <= 2 * min(30, int(0.2 * f))
        assert int(masked_rows.sum()) <= 2 * 4


def test_same_generator_seed_same_masks_and_utterances_differ():
    x, frames = features([300, 300, 300, 300], seed=2)
    config = SpecAugmentConfig(time_masks=2, time_width=40, freq_masks=0)
    a = spec_augment(x, frames, config, generator=torch.Generator().manual_seed(7))
    b = spec_augment(x, frames, config, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    columns = [tuple((a[i] != x[i]).all(dim=0).nonzero().flatten().tolist()) for i in range(4)]
    assert len(set(columns)) > 1


def test_time_masks_over_many_draws_cover_the_whole_utterance_and_reach_the_width():
    x, frames = features([100], channels=4, seed=3)
    config = SpecAugmentConfig(time_masks=1, time_width=10, max_time_fraction=1.0)
    generator = torch.Generator().manual_seed(0)
    hit = torch.zeros(100, dtype=torch.bool)
    widths = set()
    for _ in range(400):
        columns = (spec_augment(x, frames, config, generator=generator)[0] != x[0]).all(dim=0)
        hit |= columns
        widths.add(int(columns.sum()))
    assert bool(hit.all())
    assert max(widths) == 10 and min(widths) == 0


def test_config_validation():
    with pytest.raises(ValueError, match="time_masks"):
        SpecAugmentConfig(time_masks=-1)
    with pytest.raises(ValueError, match="max_time_fraction"):
        SpecAugmentConfig(max_time_fraction=1.5)
