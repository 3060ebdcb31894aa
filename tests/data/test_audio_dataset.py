import math

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from abhinaya.audio import AudioError, load_audio
from abhinaya.data.audio import (
    AudioConfig,
    AudioDataset,
    LengthBucketSampler,
    batch_padding_ratio,
    collate_audio,
    first_occurrence_mask,
)
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance

LABELS = LabelSet(["angry", "sad", "happy", "neutral"])


def _write(path, seconds, rate, seed, channels=1):
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    wave = (0.1 * rng.standard_normal((n, channels))).astype(np.float32)
    sf.write(path, wave if channels > 1 else wave[:, 0], rate)
    return path


@pytest.fixture
def corpus(tmp_path):
    """Five readable files (various lengths and rates) and one corrupt file."""
    files = {
        "long": _write(tmp_path / "long.wav", 2.0, 16000, 1),
        "resampled": _write(tmp_path / "resampled.wav", 1.0, 22050, 2),
        "stereo48k": _write(tmp_path / "stereo48k.flac", 1.5, 48000, 3, channels=2),
        "short": _write(tmp_path / "short.wav", 0.25, 16000, 4),
        "mid": _write(tmp_path / "mid.wav", 1.2, 16000, 5),
    }
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF this is not really a wave file" * 10)
    files["corrupt"] = corrupt
    return files


def _utts(corpus, names=("long", "resampled", "stereo48k", "short", "mid"), labels=None):
    labels = labels or {}
    return [Utterance(id=name, audio=str(corpus[name]), label=labels.get(name)) for name in names]


def _config(**kwargs):
    base = dict(train_crop_seconds=0.5, max_eval_seconds=30.0, min_seconds=0.1)
    base.update(kwargs)
    return AudioConfig(**base)


def test_train_items_are_cropped_short_ones_kept_whole(corpus):
    ds = AudioDataset(_utts(corpus), None, _config(), train=True)
    sizes = {item["id"]: item["waveform"].shape[0] for item in (ds[i] for i in range(len(ds)))}
    assert sizes == {"long": 8000, "resampled": 8000, "stereo48k": 8000, "short": 4000, "mid": 8000}
    assert all(ds[i]["waveform"].dtype == torch.float32 for i in range(len(ds)))


def test_eval_is_whole_deterministic_and_resampled(corpus):
    ds = AudioDataset(_utts(corpus), None, _config(), train=False)
    first = [ds[i]["waveform"] for i in range(len(ds))]
    second = [ds[i]["waveform"] for i in range(len(ds))]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    sizes = [w.shape[0] for w in first]
    assert sizes[0] == 32000 and sizes[3] == 4000 and sizes[4] == 19200
    assert abs(sizes[1] - 16000) <= 2  # 22.05 kHz -> 16 kHz
    assert abs(sizes[2] - 24000) <= 2  # 48 kHz stereo -> 16 kHz mono
    assert np.allclose(first[0].numpy(), load_audio(corpus["long"], 16000))


def test_eval_cuts_long_utterances_from_the_start(corpus):
    ds = AudioDataset(_utts(corpus, ["long"]), None, _config(max_eval_seconds=1.0), train=False)
    wave = ds[0]["waveform"].numpy()
    assert wave.shape == (16000,)
    assert np.array_equal(wave, load_audio(corpus["long"], 16000)[:16000])
    assert ds.lengths == [16000]


def test_train_crops_reproducible_per_seed_and_epoch(corpus):
    utts = _utts(corpus, ["long", "mid"])
    a = AudioDataset(utts, None, _config(), train=True, seed=3)
    b = AudioDataset(utts, None, _config(), train=True, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    for i in range(2):
        assert torch.equal(a[i]["waveform"], b[i]["waveform"])
        assert torch.equal(a[i]["waveform"], a[i]["waveform"])
    epoch2 = [a[i]["waveform"] for i in range(2)]
    a.set_epoch(3)
    assert not any(torch.equal(x, a[i]["waveform"]) for i, x in enumerate(epoch2))
    c = AudioDataset(utts, None, _config(), train=True, seed=4)
    c.set_epoch(2)
    assert not torch.equal(c[0]["waveform"], epoch2[0])


def test_crop_is_a_window_of_the_utterance(corpus):
    ds = AudioDataset(_utts(corpus, ["long"]), None, _config(), train=True)
    full = load_audio(corpus["long"], 16000)
    crop = ds[0]["waveform"].numpy()
    starts = [s for s in range(len(full) - len(crop) + 1) if full[s] == crop[0] and np.array_equal(full[s : s + len(crop)], crop)]
    assert len(starts) == 1


def test_gain_jitter_is_bounded_and_random(corpus):
    cfg = _config(train_crop_seconds=None, gain_jitter_db=6.0)
    train = AudioDataset(_utts(corpus, ["long"]), None, cfg, train=True)
    reference = AudioDataset(_utts(corpus, ["long"]), None, cfg, train=False)[0]["waveform"]
    gains = []
    for epoch in range(20):
        train.set_epoch(epoch)
        wave = train[0]["waveform"]
        gain = float(wave @ reference / (reference @ reference))
        assert torch.allclose(wave, gain * reference, atol=1e-6)
        gains.append(gain)
    low, high = 10 ** (-6 / 20), 10 ** (6 / 20)
    assert all(low - 1e-6 <= g <= high + 1e-6 for g in gains)
    assert max(gains) - min(gains) > 0.2


def test_speed_perturbation_changes_tempo_and_pitch_together_in_training_only(tmp_path):
    rate, seconds, tone = 16000, 2.0, 440.0
    t = np.arange(int(rate * seconds)) / rate
    sf.write(tmp_path / "tone.wav", (0.3 * np.sin(2 * np.pi * tone * t)).astype(np.float32), rate)
    utts = [Utterance(id="tone", audio=str(tmp_path / "tone.wav"))]
    cfg = _config(train_crop_seconds=None, speed_perturb=0.1)
    assert len(AudioDataset(utts, None, cfg, train=False)[0]["waveform"]) == len(t)

    train = AudioDataset(utts, None, cfg, train=True)
    factors = []
    for epoch in range(12):
        train.set_epoch(epoch)
        wave = train[0]["waveform"].numpy()
        factor = len(t) / len(wave)
        spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
        peak_hz = np.argmax(spectrum) * rate / len(wave)
        # Faster by `factor` and higher by the same factor, within one FFT bin.
        assert abs(peak_hz - tone * factor) <= rate / len(wave)
        factors.append(factor)
    assert 0.9 - 1e-3 <= min(factors) and max(factors) <= 1.1 + 1e-3
    assert max(factors) - min(factors) > 0.05
    with pytest.raises(ValueError, match="speed_perturb"):
        AudioConfig(speed_perturb=0.7)


def test_noise_at_requested_snr_and_normalization(corpus):
    cfg = _config(train_crop_seconds=None, noise_snr_db=10.0, noise_snr_span_db=0.0)
    clean = AudioDataset(_utts(corpus, ["long"]), None, cfg, train=False)[0]["waveform"].double()
    noisy = AudioDataset(_utts(corpus, ["long"]), None, cfg, train=True)[0]["waveform"].double()
    snr = 10 * math.log10(clean.pow(2).mean() / (noisy - clean).pow(2).mean())
    assert abs(snr - 10.0) < 0.5
    norm = AudioDataset(_utts(corpus, ["mid"]), None, _config(normalize=True), train=False)[0]["waveform"]
    assert abs(float(norm.mean())) < 1e-4 and abs(float(norm.std()) - 1.0) < 1e-3


def test_collate_pads_with_zeros_and_keeps_lengths(corpus):
    ds = AudioDataset(_utts(corpus, ["long", "short", "mid"]), None, _config(), train=False)
    batch = collate_audio([ds[0], ds[1], ds[2]])
    assert batch["waveforms"].shape == (3, 32000) and batch["waveforms"].dtype == torch.float32
    assert batch["lengths"].tolist() == [32000, 4000, 19200] and batch["lengths"].dtype == torch.long
    assert batch["index"].tolist() == [0, 1, 2] and batch["ids"] == ["long", "short", "mid"]
    assert torch.equal(batch["waveforms"][1, :4000], ds[1]["waveform"])
    assert not batch["waveforms"][1, 4000:].any() and not batch["waveforms"][2, 19200:].any()


def test_labels_encoded_with_label_set_and_minus_one_when_absent(corpus):
    utts = _utts(corpus, ["long", "short", "mid"], labels={"long": "sad", "mid": "neutral"})
    ds = AudioDataset(utts, LABELS, _config(), train=False)
    assert [ds[i]["label"] for i in range(3)] == [1, -1, 3]
    assert ds.labels == [1, -1, 3]
    assert collate_audio([ds[0], ds[1]])["labels"].tolist() == [1, -1]
    unlabelled = AudioDataset(utts, None, _config(), train=False)
    assert [unlabelled[i]["label"] for i in range(3)] == [-1, -1, -1]
    utts[0].label = "boredom"
    with pytest.raises(ValueError, match="boredom"):
        AudioDataset(utts, LABELS, _config())


def test_plain_paths_are_accepted(corpus):
    ds = AudioDataset([corpus["short"], str(corpus["mid"])], None, _config())
    assert ds.ids == ["short", "mid"] and ds[1]["label"] == -1


def test_unreadable_file_raises_naming_it(corpus):
    utts = _utts(corpus, ["long", "corrupt", "mid"])
    ds = AudioDataset(utts, None, _config(), train=False)
    assert ds[0]["waveform"].shape[0] == 32000
    with pytest.raises(AudioError, match="corrupt.wav"):
        ds[1]
    with pytest.raises(AudioError, match="corrupt.wav"):
        AudioDataset(utts, None, _config(), check=True)


def test_unreadable_and_too_short_files_reported_and_skipped(corpus, tmp_path):
    tiny = _write(tmp_path / "tiny.wav", 0.05, 16000, 9)
    utts = _utts(corpus, ["long", "corrupt", "mid"]) + [
        Utterance(id="tiny", audio=str(tiny)),
        Utterance(id="gone", audio=str(tmp_path / "gone.wav")),
        Utterance(id="textonly"),
    ]
    ds = AudioDataset(utts, None, _config(), train=False, on_error="skip")
    assert ds.ids == ["long", "mid"] and len(ds) == 2
    assert len(ds.errors) == 4
    by_name = {e.split(":")[0].rsplit("/", 1)[-1]: e for e in ds.errors}
    assert set(by_name) == {"textonly", "corrupt.wav", "tiny.wav", "gone.wav"}
    assert by_name["gone.wav"].startswith(str(tmp_path / "gone.wav") + ": ")
    assert "too short" in by_name["tiny.wav"]
    assert [ds[i]["index"] for i in range(2)] == [0, 1] and ds[1]["id"] == "mid"
    assert ds.lengths == [32000, 19200]


def test_lengths_follow_manifest_duration_header_and_crop_limits(corpus):
    utts = _utts(corpus, ["long", "resampled", "short"])
    utts[0].duration = 1.75  # a manifest value is trusted until the file is decoded
    ds = AudioDataset(utts, None, _config(), train=False)
    assert ds.lengths == [28000, 16000, 4000]
    ds.scan()
    assert ds.lengths[0] == 32000
    train = AudioDataset(utts, None, _config(), train=True)
    assert train.lengths == [8000, 8000, 4000]
    whole = AudioDataset(utts, None, _config(train_crop_seconds=None), train=True)
    assert whole.lengths == [28000, 16000, 4000]


def test_cache_holds_decoded_audio(corpus):
    ds = AudioDataset(_utts(corpus, ["mid"]), None, _config(cache_audio=True))
    ds[0]
    assert len(ds._cache) == 1
    nocache = AudioDataset(_utts(corpus, ["mid"]), None, _config(cache_audio=False))
    nocache[0]
    assert not nocache._cache


def test_dataloader_with_bucket_sampler(corpus):
    ds = AudioDataset(_utts(corpus), None, _config(), train=False)
    sampler = LengthBucketSampler(ds.lengths, 2, shuffle=False)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_audio)
    seen = []
    for batch in loader:
        assert batch["waveforms"].shape[1] == int(batch["lengths"].max())
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(len(ds)))
    assert seen[0] == 0  # longest first


# ---- sampler ------------------------------------------------------------------------------------------


def _ravdess_like(n=600, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(3.0, 5.0, n) * 16000).astype(int).tolist()


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("n", [1, 7, 64, 333])
def test_sampler_yields_every_index_once(shuffle, n):
    lengths = _ravdess_like(n)
    sampler = LengthBucketSampler(lengths, 8, shuffle=shuffle, bucket_size_multiplier=4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == math.ceil(n / 8)
    assert sorted(i for b in batches for i in b) == list(range(n))
    assert all(len(b) == 8 for b in batches[:-1])  # only the last batch may be short
    dropped = LengthBucketSampler(lengths, 8, shuffle=shuffle, drop_last=True)
    kept = list(dropped)
    assert len(kept) == len(dropped) == n // 8 and all(len(b) == 8 for b in kept)
    assert len({i for b in kept for i in b}) == 8 * (n // 8)


def test_bucketing_reduces_padding():
    lengths = _ravdess_like(1000)
    rng = np.random.default_rng(1)
    perm = rng.permutation(len(lengths))
    random_batches = [perm[i : i + 16].tolist() for i in range(0, len(perm), 16)]
    bucketed = list(LengthBucketSampler(lengths, 16, shuffle=True))
    in_order = list(LengthBucketSampler(lengths, 16, shuffle=False))
    random_ratio = batch_padding_ratio(lengths, random_batches)
    bucket_ratio = batch_padding_ratio(lengths, bucketed)
    sorted_ratio = batch_padding_ratio(lengths, in_order)
    assert random_ratio > 0.15
    assert bucket_ratio < random_ratio / 10
    assert sorted_ratio <= bucket_ratio
    for batch in bucketed:  # length-homogeneous batches
        sizes = [lengths[i] for i in batch]
        assert max(sizes) - min(sizes) < 0.2 * 16000


def test_padding_ratio_definition():
    assert batch_padding_ratio([4, 2, 3, 3], [[0, 1], [2, 3]]) == pytest.approx(2 / 12)
    assert batch_padding_ratio([5], []) == 0.0


def test_shuffle_changes_with_epoch_and_is_reproducible():
    lengths = _ravdess_like(200)
    a = LengthBucketSampler(lengths, 8, shuffle=True, seed=1, bucket_size_multiplier=5)
    b = LengthBucketSampler(lengths, 8, shuffle=True, seed=1, bucket_size_multiplier=5)
    epoch0 = list(a)
    assert epoch0 == list(a) == list(b)
    a.set_epoch(1)
    b.set_epoch(1)
    epoch1 = list(a)
    assert epoch1 != epoch0 and epoch1 == list(b)
    assert sorted(map(sorted, epoch1)) != sorted(map(sorted, epoch0))  # different groupings, not just order
    other_seed = LengthBucketSampler(lengths, 8, shuffle=True, seed=2, bucket_size_multiplier=5)
    assert list(other_seed) != epoch0


def test_no_shuffle_is_deterministic_and_sorted():
    lengths = _ravdess_like(100)
    sampler = LengthBucketSampler(lengths, 8, shuffle=False)
    first = list(sampler)
    sampler.set_epoch(5)
    assert list(sampler) == first
    flat = [lengths[i] for b in first for i in b]
    assert flat == sorted(flat, reverse=True)


# ---- distributed ----------------------------------------------------------------------------------------


def _simulate_gather_for_metrics(per_rank, n, batch_size, total_batch_size):
    """What ``accelerator.gather_for_metrics`` returns over an epoch: every step
    gathers the ranks' batches in rank order; the last step keeps only the first
    ``n % total_batch_size`` rows (when non-zero)."""
    steps = {len(b) for b in per_rank}
    assert len(steps) == 1, "every process must run the same number of steps"
    gathered = []
    n_steps = steps.pop()
    remainder = n % total_batch_size
    for step in range(n_steps):
        rows = [i for rank in per_rank for i in rank[step]]
        if step == n_steps - 1 and remainder:
            rows = rows[:remainder]
        gathered += rows
    return gathered


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("n", [1, 5, 8, 13, 16, 24, 37, 100])
def test_two_ranks_standalone_cover_every_utterance(shuffle, n):
    lengths = _ravdess_like(n, seed=n)
    bs, world = 4, 2
    ranks = [
        list(LengthBucketSampler(lengths, bs, shuffle=shuffle, num_replicas=world, rank=r, bucket_size_multiplier=3))
        for r in range(world)
    ]
    single = LengthBucketSampler(lengths, bs, shuffle=shuffle, bucket_size_multiplier=3)
    steps = math.ceil(n / (bs * world))
    assert [len(r) for r in ranks] == [steps, steps]
    assert len(LengthBucketSampler(lengths, bs, shuffle=shuffle, num_replicas=2, rank=1)) == steps
    assert all(len(b) == bs for r in ranks for b in r)  # same shapes on every rank and step
    union = [i for r in ranks for b in r for i in b]
    assert set(union) == set(range(n))
    # The duplicates are exactly the padding: the first indices of the epoch's order, repeated.
    flat_order = [i for b in single.global_batches() for i in b]
    extra = len(union) - n
    assert extra == steps * bs * world - n
    assert sorted(union) == sorted(flat_order + [flat_order[j % min(n, bs * world)] for j in range(extra)])
    # Gathering step by step and truncating the last step gives each utterance exactly once;
    # so does keeping the first occurrence of each index.
    gathered = _simulate_gather_for_metrics(ranks, n, bs, bs * world)
    assert sorted(gathered) == list(range(n))
    stacked = torch.tensor([i for step in zip(*ranks) for b in step for i in b])
    assert sorted(stacked[first_occurrence_mask(stacked)].tolist()) == list(range(n))


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("n", [3, 12, 13, 50, 97])
def test_matches_accelerate_batch_sampler_shard(world, shuffle, drop_last, n):
    data_loader = pytest.importorskip("accelerate.data_loader")
    lengths = _ravdess_like(n, seed=n + 1)
    bs = 4
    base = LengthBucketSampler(lengths, bs, shuffle=shuffle, drop_last=drop_last, seed=7, bucket_size_multiplier=2)
    base.set_epoch(3)
    shards = [data_loader.BatchSamplerShard(base, num_processes=world, process_index=r) for r in range(world)]
    via_accelerate = [list(s) for s in shards]
    assert [len(s) for s in shards] == [len(b) for b in via_accelerate]
    for r in range(world):
        mine = LengthBucketSampler(
            lengths, bs, shuffle=shuffle, drop_last=drop_last, seed=7, bucket_size_multiplier=2, num_replicas=world, rank=r
        )
        mine.set_epoch(3)
        assert list(mine) == via_accelerate[r]
        assert len(mine) == len(shards[r])
    if not drop_last:
        # Accelerate's total batch size is batch_size * world; gather_for_metrics keeps the real rows only.
        gathered = _simulate_gather_for_metrics(via_accelerate, n, bs, bs * world)
        assert sorted(gathered) == list(range(n))


@pytest.mark.parametrize("n", [3, 13, 50])
def test_accelerate_split_batches_also_exact(n):
    data_loader = pytest.importorskip("accelerate.data_loader")
    lengths = _ravdess_like(n, seed=n)
    base = LengthBucketSampler(lengths, 4, shuffle=True)
    shards = [list(data_loader.BatchSamplerShard(base, 2, r, split_batches=True)) for r in range(2)]
    gathered = _simulate_gather_for_metrics(shards, n, 2, 4)  # split: total batch size is batch_size
    assert sorted(gathered) == list(range(n))


def test_uneven_batches_break_the_one_row_per_utterance_rule():
    data_loader = pytest.importorskip("accelerate.data_loader")
    lengths = _ravdess_like(20)  # five batches of 4 for two processes
    base = LengthBucketSampler(lengths, 4, shuffle=False)
    shards = [list(data_loader.BatchSamplerShard(base, 2, r, even_batches=False)) for r in range(2)]
    assert len(shards[0]) != len(shards[1])  # the processes would run different numbers of steps


def test_first_occurrence_mask():
    assert first_occurrence_mask(torch.tensor([3, 1, 3, 0, 1])).tolist() == [True, True, False, True, False]


_TWO_PROCESS_SCRIPT = r'''
import json, sys
import torch
from torch.utils.data import DataLoader
from accelerate import Accelerator
from abhinaya.data.audio import AudioConfig, AudioDataset, LengthBucketSampler, collate_audio

paths, batch_size, out = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3]
accelerator = Accelerator(cpu=True)
report = []
for train in (False, True):
    dataset = AudioDataset(paths, None, AudioConfig(train_crop_seconds=0.5), train=train)
    sampler = LengthBucketSampler(dataset.lengths, batch_size, shuffle=train, seed=1)
    loader = accelerator.prepare(DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_audio))
    for epoch in (2, 3):
        sampler.set_epoch(epoch)
        loader.set_epoch(epoch)
        rows = torch.cat([accelerator.gather_for_metrics(batch["index"]) for batch in loader]).tolist()
        report.append({"train": train, "epoch": epoch, "rows": rows})
if accelerator.is_main_process:
    with open(out, "w") as handle:
        json.dump(report, handle)
accelerator.wait_for_everyone()
accelerator.end_training()  # tear gloo down before exit; a process leaving first can abort the other
'''


@pytest.mark.slow
def test_two_process_gloo_gather_gives_one_row_per_utterance(tmp_path):
    pytest.importorskip("accelerate")
    import json
    import socket
    import subprocess
    import sys

    paths = [str(_write(tmp_path / f"u{i:02d}.wav", 0.3 + 0.04 * i, 16000, i)) for i in range(13)]
    script = tmp_path / "run.py"
    script.write_text(_TWO_PROCESS_SCRIPT)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    result = subprocess.run(cmd + [str(script), ",".join(paths), "4", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    for entry in report:
        assert sorted(entry["rows"]) == list(range(13)), entry
    train = [e["rows"] for e in report if e["train"]]
    evaluation = [e["rows"] for e in report if not e["train"]]
    assert train[0] != train[1] and evaluation[0] == evaluation[1]
