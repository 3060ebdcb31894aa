"""The audio side of training and inference: datasets, batching, length bucketing.

``AudioDataset`` turns manifest utterances into mono float32 waveforms at the
model's rate (``AudioConfig``), with a random crop and augmentation in training
only; ``collate_audio`` pads a list of items into one batch with true lengths;
``LengthBucketSampler`` groups utterances of similar length to cut padding.

Training and inference follow two different rules on purpose:

- training (``train=True``): optional speed perturbation, a random
  ``train_crop_seconds`` window of each utterance, random gain and optional
  white noise, all drawn from a generator
  seeded by ``(seed, epoch, index)``, so a run is reproducible and a resumed run
  sees exactly the crops it would have seen;
- inference (``train=False``): deterministic. The whole utterance, cut to its
  first ``max_eval_seconds`` when it is longer (no random crop at test time).

Distributed runs (HF Accelerate, DDP): see ``LengthBucketSampler`` for the route
that yields exactly one prediction per utterance after gathering.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from abhinaya.audio import AudioError, audio_info, load_audio, resample
from abhinaya.data.corruption import AugmentStep, apply_steps
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance

_SEED_MASK = (1 << 64) - 1


@dataclass
class AudioConfig:
    """How waveforms are prepared for a model. All durations are seconds.

    - ``sample_rate``: Hz; every file is resampled to it.
    - ``train_crop_seconds``: length of the random window taken from each
      utterance in training (shorter utterances are kept whole); ``None``
      trains on whole utterances. Never applied at inference.
    - ``max_eval_seconds``: at inference, longer utterances are cut to their
      first ``max_eval_seconds`` (deterministic; long recordings should be
      segmented before, not cropped at random).
    - ``min_seconds``: shorter files are errors (``AudioError``).
    - ``speed_perturb``: training only; when above 0, each utterance is
      resampled by a factor drawn uniformly from ``[1 - speed_perturb,
      1 + speed_perturb]`` before the crop: tempo and pitch change together,
      as in Kaldi-style speed perturbation (0.1 = 0.9x to 1.1x).
    - ``gain_jitter_db``: training only; a random gain uniform in
      ``[-gain_jitter_db, +gain_jitter_db]`` dB (0 disables it).
    - ``noise_snr_db``: training only; when set, white noise is added at a
      signal-to-noise ratio drawn uniformly from
      ``[noise_snr_db, noise_snr_db + noise_snr_span_db]`` dB.
    - ``normalize``: zero mean and unit variance per utterance, computed on the
      waveform the model sees (after crop and augmentation, so it cancels the
      gain jitter but not the noise).
    - ``cache_audio``: keep decoded waveforms in memory (RAVDESS, 74 min, is
      about 280 MB of float32 at 16 kHz).
    - ``augment``: training only; the conditions of real recordings (noise,
      reverberation, telephone band and codecs, gain: ``data/corruption.py``),
      applied after the crop and before the gain jitter, each step with its
      probability, drawn from the utterance's (seed, epoch, index) generator.
    - ``corrupt``: inference only; the same steps applied to every waveform
      the model is given (seeded by the utterance id), to measure robustness
      (``abhinaya predict --corrupt``).
    """

    sample_rate: int = 16000
    train_crop_seconds: float | None = 3.0
    max_eval_seconds: float = 30.0
    min_seconds: float = 0.1
    speed_perturb: float = 0.0
    gain_jitter_db: float = 0.0
    noise_snr_db: float | None = None
    noise_snr_span_db: float = 20.0
    normalize: bool = False
    cache_audio: bool = True
    augment: list[AugmentStep] = field(default_factory=list)
    corrupt: list[AugmentStep] = field(default_factory=list)

    def __post_init__(self) -> None:
        if int(self.sample_rate) <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.train_crop_seconds is not None and self.train_crop_seconds <= 0:
            raise ValueError(f"train_crop_seconds must be positive or None, got {self.train_crop_seconds}")
        if self.max_eval_seconds <= 0:
            raise ValueError(f"max_eval_seconds must be positive, got {self.max_eval_seconds}")
        if self.min_seconds < 0:
            raise ValueError(f"min_seconds must be >= 0, got {self.min_seconds}")
        if not 0 <= self.speed_perturb < 0.5:
            raise ValueError(f"speed_perturb must be in [0, 0.5), got {self.speed_perturb}")
        if self.gain_jitter_db < 0:
            raise ValueError(f"gain_jitter_db must be >= 0, got {self.gain_jitter_db}")
        if self.noise_snr_span_db < 0:
            raise ValueError(f"noise_snr_span_db must be >= 0, got {self.noise_snr_span_db}")

    @property
    def crop_samples(self) -> int | None:
        """Training window in samples, or ``None`` for whole utterances."""
        if self.train_crop_seconds is None:
            return None
        return max(1, int(round(self.train_crop_seconds * self.sample_rate)))

    @property
    def max_eval_samples(self) -> int:
        return max(1, int(round(self.max_eval_seconds * self.sample_rate)))


class AudioDataset(Dataset):
    """Utterances -> ``{"index", "id", "waveform", "label"}`` items.

    ``waveform`` is a 1-D float32 tensor at ``config.sample_rate``; ``label`` is
    the class index in ``label_set``, or -1 for an unlabelled utterance or when
    ``label_set`` is ``None``; ``index`` is the item's position in this dataset.
    ``utterances`` are manifest ``Utterance`` objects or plain audio paths (the
    id is then the file's base name). A label outside ``label_set`` is a
    ``ValueError`` at construction.

    Unreadable files. With ``on_error="raise"`` (default) the ``AudioError`` of
    a bad file (its message starts with the path) propagates from ``scan`` or
    from item access. With ``on_error="skip"``, ``scan()`` decodes every file
    up front (at construction unless ``check=False``), records each failure in
    ``errors`` as ``"PATH: reason"`` and removes that utterance, so every other
    file can be processed; indices refer to the remaining utterances. Scanning
    fills the cache when ``cache_audio`` is on, so it is not wasted work.

    Long audio at inference. A file longer than ``max_eval_seconds`` is cut to
    its beginning; each such file gets one line in ``notes`` once decoded
    (``"PATH: 42.0 s long; only the first 30.0 s are used"``), so that callers
    can say so.

    Randomness. Training items draw their crop, gain and noise from a generator
    seeded by ``(seed, epoch, index)``; call ``set_epoch`` at the start of each
    epoch. DataLoader workers get a copy of the dataset when an epoch's iterator
    is created, so use non-persistent workers (the default) with augmentation,
    and call ``scan()`` first to share a filled cache with them.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance | str | Path],
        label_set: LabelSet | None = None,
        config: AudioConfig | None = None,
        train: bool = False,
        seed: int = 0,
        *,
        on_error: Literal["raise", "skip"] = "raise",
        check: bool | None = None,
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.config = config if config is not None else AudioConfig()
        self.label_set = label_set
        self.train = bool(train)
        self.seed = int(seed)
        self.epoch = 0
        self.on_error = on_error
        self.errors: list[str] = []
        # At inference: "PATH: 42.0 s long; only the first 30.0 s are used" for each file cut to max_eval_seconds.
        self.notes: list[str] = []
        self._noted: set[str] = set()
        self._cache: dict[str, np.ndarray] = {}
        self._num_samples: dict[str, int] = {}
        self._lengths: list[int] | None = None

        items = [as_utterance(u) for u in utterances]
        self._check_labels(items)
        self._set_utterances(utterances_with_audio(items, on_error, self.errors))
        if check is None:
            check = on_error == "skip"
        if check:
            self.scan()

    def _check_labels(self, items: list[Utterance]) -> None:
        check_known_labels(items, self.label_set)

    def _set_utterances(self, utterances: list[Utterance]) -> None:
        self._utterances = utterances
        encode = self.label_set.encode if self.label_set is not None else None
        self._labels = [encode(u.label) if encode is not None and u.label is not None else -1 for u in utterances]
        self._lengths = None

    @property
    def utterances(self) -> tuple[Utterance, ...]:
        """The utterances served, in index order (bad files excluded after ``scan``)."""
        return tuple(self._utterances)

    @property
    def ids(self) -> list[str]:
        return [u.id for u in self._utterances]

    @property
    def labels(self) -> list[int]:
        """Class index per utterance, -1 where unlabelled."""
        return list(self._labels)

    def set_epoch(self, epoch: int) -> None:
        """Select the random crops and augmentation of ``epoch`` (training only)."""
        self.epoch = int(epoch)

    def scan(self) -> list[str]:
        """Decode every file; return the new ``"PATH: reason"`` errors.

        With ``on_error="skip"`` failing utterances are removed and their errors
        appended to ``errors``; with ``"raise"`` the first ``AudioError`` is raised.
        """
        kept: list[Utterance] = []
        found: list[str] = []
        for utt in self._utterances:
            try:
                self._waveform(utt)
            except AudioError as err:
                if self.on_error == "raise":
                    raise
                found.append(str(err))
                continue
            kept.append(utt)
        self._set_utterances(kept)  # also refreshes lengths with the decoded sizes
        self.errors.extend(found)
        return found

    def __len__(self) -> int:
        return len(self._utterances)

    @property
    def lengths(self) -> list[int]:
        """Samples per utterance as served, i.e. after the crop limits
        (``train_crop_seconds`` in training, ``max_eval_seconds`` at inference).

        Taken from decoded audio when already decoded, else from the manifest's
        ``duration``, else from the file header; meant for length bucketing.
        """
        if self._lengths is None:
            cfg = self.config
            limit = cfg.crop_samples if self.train else cfg.max_eval_samples
            lengths = []
            for utt in self._utterances:
                n = self._known_samples(utt)
                lengths.append(min(n, limit) if limit is not None else n)
            self._lengths = lengths
        return list(self._lengths)

    def _known_samples(self, utt: Utterance) -> int:
        rate = self.config.sample_rate
        if utt.audio in self._num_samples:
            return self._num_samples[utt.audio]
        if utt.duration is not None:
            return max(1, int(round(utt.duration * rate)))
        info = audio_info(utt.audio)
        return max(1, int(round(info.frames * rate / info.sample_rate)))

    def _waveform(self, utt: Utterance) -> np.ndarray:
        wave = self._cache.get(utt.audio)
        if wave is None:
            wave = load_audio(utt.audio, self.config.sample_rate, min_duration=self.config.min_seconds)
            self._num_samples[utt.audio] = int(wave.shape[0])
            if not self.train and wave.shape[0] > self.config.max_eval_samples and utt.audio not in self._noted:
                self._noted.add(utt.audio)
                self.notes.append(
                    f"{utt.audio}: {wave.shape[0] / self.config.sample_rate:.1f} s long; only the first "
                    f"{self.config.max_eval_seconds:.1f} s are used"
                )
            if self.config.cache_audio:
                self._cache[utt.audio] = wave
        return wave

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < len(self._utterances):
            raise IndexError(f"index {index} out of range for {len(self._utterances)} utterances")
        utt = self._utterances[index]
        wave = self._waveform(utt)
        if self.train:
            rng = np.random.default_rng([self.seed & _SEED_MASK, self.epoch & _SEED_MASK, index])
            wave = self._augment(wave, rng)
        else:
            wave = wave[: self.config.max_eval_samples]
            if self.config.corrupt:
                rng = np.random.default_rng([self.seed & _SEED_MASK, zlib.crc32(utt.id.encode("utf-8"))])
                wave = apply_steps(wave, self.config.sample_rate, self.config.corrupt, rng)
        if self.config.normalize:
            wave = _normalize(wave)
        return {
            "index": index,
            "id": utt.id,
            "waveform": torch.tensor(wave, dtype=torch.float32),
            "label": self._labels[index],
        }

    def _augment(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        if cfg.speed_perturb > 0:
            factor = rng.uniform(1.0 - cfg.speed_perturb, 1.0 + cfg.speed_perturb)
            # Read as if recorded at rate * factor and brought back to rate: factor > 1 is faster and higher.
            wave = resample(wave, cfg.sample_rate * factor, cfg.sample_rate, quality="HQ")
        crop = cfg.crop_samples
        if crop is not None and wave.shape[0] > crop:
            start = int(rng.integers(0, wave.shape[0] - crop + 1))
            wave = wave[start : start + crop]
        if cfg.augment:
            wave = apply_steps(wave, cfg.sample_rate, cfg.augment, rng)
        if cfg.gain_jitter_db > 0:
            gain_db = rng.uniform(-cfg.gain_jitter_db, cfg.gain_jitter_db)
            wave = wave * np.float32(10.0 ** (gain_db / 20.0))
        if cfg.noise_snr_db is not None:
            snr_db = rng.uniform(cfg.noise_snr_db, cfg.noise_snr_db + cfg.noise_snr_span_db)
            power = float(np.mean(np.square(wave, dtype=np.float64)))
            if power > 0:
                scale = math.sqrt(power / 10.0 ** (snr_db / 10.0))
                wave = wave + (scale * rng.standard_normal(wave.shape[0])).astype(np.float32)
        return wave


def as_utterance(item: Utterance | str | Path) -> Utterance:
    """An utterance as given, or one for an audio path (its id the file's base name)."""
    if isinstance(item, Utterance):
        return item
    if isinstance(item, (str, Path)):
        return Utterance(id=Path(item).stem, audio=str(item))
    raise TypeError(f"expected an Utterance or an audio path, got {type(item).__name__}")


def utterances_with_audio(items: list[Utterance], on_error: str, errors: list[str]) -> list[Utterance]:
    """The items that name an audio file; one without raises (``on_error="raise"``) or is reported in ``errors``."""
    kept = []
    for utt in items:
        if utt.audio is None:
            err = AudioError(utt.id, "utterance has no audio path")
            if on_error == "raise":
                raise err
            errors.append(str(err))
        else:
            kept.append(utt)
    return kept


def _normalize(wave: np.ndarray) -> np.ndarray:
    mean = float(np.mean(wave, dtype=np.float64))
    std = float(np.std(wave, dtype=np.float64))
    return ((wave - mean) / max(std, 1e-6)).astype(np.float32)


def check_known_labels(items: Sequence[Utterance], label_set: LabelSet | None) -> None:
    """A ``ValueError`` naming the utterances whose label is outside ``label_set`` (None checks nothing)."""
    if label_set is None:
        return
    bad = [f"{u.id} ({u.label!r})" for u in items if u.label is not None and u.label not in label_set]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(f"labels outside the label set {list(label_set)}: {shown}")


def collate_audio(items: Sequence[dict]) -> dict:
    """Pad ``AudioDataset`` items into a batch.

    Returns ``waveforms`` (B, S) float32, zero-padded to the longest item;
    ``lengths`` (B,) long, the true number of samples of each row; ``labels``
    (B,) long (-1 = unlabelled); ``index`` (B,) long; ``ids`` list of B strings.
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    lengths = torch.tensor([int(item["waveform"].shape[0]) for item in items], dtype=torch.long)
    waveforms = torch.zeros(len(items), int(lengths.max()), dtype=torch.float32)
    for row, item in enumerate(items):
        waveforms[row, : lengths[row]] = item["waveform"]
    return {
        "waveforms": waveforms,
        "lengths": lengths,
        "labels": torch.tensor([int(item["label"]) for item in items], dtype=torch.long),
        "index": torch.tensor([int(item["index"]) for item in items], dtype=torch.long),
        "ids": [str(item["id"]) for item in items],
    }


class LengthBucketSampler(Sampler[list[int]]):
    """Batch sampler (``DataLoader(batch_sampler=...)``) of length-homogeneous batches.

    ``lengths``: samples per utterance (``AudioDataset.lengths``).

    - ``shuffle=True`` (training): a random permutation (seeded by
      ``(seed, epoch)``) is cut into chunks of ``batch_size *
      bucket_size_multiplier``; each chunk is sorted by length and cut into
      batches; the full batches are shuffled.
    - ``shuffle=False`` (evaluation): all utterances sorted by length,
      longest first (out-of-memory shows on the first batch), then cut.
    - ``groups`` (training on several corpora): a group index per utterance;
      each epoch then draws ``len(lengths)`` utterances in which group ``g``
      has the share ``group_weights[g]`` (equal by default), a small group
      repeated and a large one subsampled, instead of a permutation. The
      number of batches per epoch does not change.

    In both modes every batch holds exactly ``batch_size`` indices except at
    most one, which is always yielded last (and dropped with ``drop_last``).
    Accelerate's batch-sampler sharding relies on this, so never reorder the
    output. ``set_epoch`` selects the shuffle; without shuffling the order never
    changes.

    Distributed runs: two routes give the same per-process batches and exactly
    one prediction per utterance.

    1. Through Accelerate (recommended). Build the sampler for one process
       (``num_replicas=1``), ``DataLoader(dataset, batch_sampler=sampler,
       collate_fn=collate_audio)``, then ``accelerator.prepare(loader)`` with the
       default ``DataLoaderConfiguration`` (``split_batches=False``,
       ``even_batches=True``, no ``dispatch_batches``) and ``drop_last=False``
       for evaluation. Accelerate's ``BatchSamplerShard`` hands whole batches
       to processes round-robin and completes the last round with indices from
       the start of the epoch's order, so every process runs
       ``ceil(N / (batch_size * P))`` steps of ``batch_size`` items. Gather every
       step's outputs (and ``batch["index"]``) with
       ``accelerator.gather_for_metrics``: at the last step it keeps the first
       ``N % (batch_size * P)`` rows, which are exactly the real ones, so the
       gathered rows are the N utterances, each once. ``split_batches=True``
       also works (``batch_size`` divisible by P); ``even_batches=False`` does
       not (processes run different numbers of steps). Per epoch, call
       ``sampler.set_epoch(epoch)`` and ``loader.set_epoch(epoch)`` on the
       prepared loader: with several processes Accelerate's own ``set_epoch``
       reaches the dataset but not a custom batch sampler, and its iteration
       counter would otherwise reset the epoch when a run is resumed.
    2. Standalone (``num_replicas=P``, ``rank=r``; the loader must then not go
       through ``accelerator.prepare``, which would shard it again). The batches
       are padded exactly as Accelerate pads them (same steps, same shapes);
       gather with ``accelerator.gather`` and keep the first occurrence of each
       ``index`` (``first_occurrence_mask``).

    In training the padding indices are trained on twice in that epoch, as
    with ``DistributedSampler``. With ``drop_last`` the incomplete batch, and
    with P processes the batches of an incomplete last round, are dropped.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        bucket_size_multiplier: int = 50,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
        groups: Sequence[int] | None = None,
        group_weights: Sequence[float] | None = None,
    ):
        self.lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        self.groups = None if groups is None else np.asarray(groups, dtype=np.int64).reshape(-1)
        if self.groups is not None:
            if self.groups.shape != self.lengths.shape:
                raise ValueError(f"groups: {len(self.groups)} entries for {len(self.lengths)} utterances")
            count = int(self.groups.max()) + 1 if len(self.groups) else 0
            weights = np.ones(count) if group_weights is None else np.asarray(group_weights, dtype=np.float64)
            if weights.shape != (count,) or not (weights > 0).all():
                raise ValueError(f"group_weights: need {count} positive weights, got {group_weights!r}")
            self.group_weights = weights
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if bucket_size_multiplier < 1:
            raise ValueError(f"bucket_size_multiplier must be >= 1, got {bucket_size_multiplier}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas}, {rank}")
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.bucket_size_multiplier = int(bucket_size_multiplier)
        self.drop_last = bool(drop_last)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def global_batches(self) -> list[list[int]]:
        """This epoch's batches for all processes together, before sharding."""
        n, bs = len(self.lengths), self.batch_size
        if self.shuffle:
            rng = np.random.default_rng([self.seed & _SEED_MASK, self.epoch & _SEED_MASK])
            order = rng.permutation(n) if self.groups is None else self._balanced_order(rng)
            chunk = bs * self.bucket_size_multiplier
            batches: list[np.ndarray] = []
            for start in range(0, n, chunk):
                part = order[start : start + chunk]
                part = part[np.argsort(-self.lengths[part], kind="stable")]
                batches.extend(part[i : i + bs] for i in range(0, len(part), bs))
            full = [b for b in batches if len(b) == bs]
            short = [b for b in batches if len(b) < bs]
            batches = [full[i] for i in rng.permutation(len(full))] + short
        else:
            order = np.lexsort((np.arange(n), -self.lengths))
            batches = [order[i : i + bs] for i in range(0, n, bs)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == bs]
        return [[int(i) for i in b] for b in batches]

    def _balanced_order(self, rng: np.random.Generator) -> np.ndarray:
        """An epoch of ``n`` draws in which group ``g`` has the share ``weight_g / sum(weights)``: a group with fewer
        utterances than its share is taken whole as often as it fits, the rest drawn without repetition; a larger
        group is subsampled (a new subset each epoch)."""
        n = len(self.lengths)
        members = [np.flatnonzero(self.groups == g) for g in range(len(self.group_weights))]
        present = np.array([len(m) > 0 for m in members])
        shares = np.where(present, self.group_weights, 0.0)
        wanted = shares / shares.sum() * n
        counts = np.floor(wanted).astype(np.int64)
        for g in np.argsort(-(wanted - counts), kind="stable")[: n - int(counts.sum())]:
            counts[g] += 1  # largest remainders: the counts sum to n
        picks = []
        for idx, count in zip(members, counts):
            if not count:
                continue
            whole, rest = divmod(int(count), len(idx))
            picks += [rng.permutation(idx) for _ in range(whole)]
            picks.append(rng.choice(idx, size=rest, replace=False))
        return rng.permutation(np.concatenate(picks))

    def _shard(self, batches: list[list[int]]) -> list[list[int]]:
        """This rank's batches, padded the way Accelerate's ``BatchSamplerShard``
        (``split_batches=False``, ``even_batches=True``) pads them."""
        p, bs = self.num_replicas, self.batch_size
        if p == 1:
            return batches
        if self.drop_last:
            usable = len(batches) // p * p
            return batches[self.rank : usable : p]
        flat = [i for b in batches for i in b]
        if not flat:
            return []
        total = math.ceil(len(flat) / (bs * p)) * bs * p
        head = flat[: bs * p]
        flat += [head[j % len(head)] for j in range(total - len(flat))]
        padded = [flat[i : i + bs] for i in range(0, total, bs)]
        return padded[self.rank :: p]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._shard(self.global_batches())

    def __len__(self) -> int:
        n, bs, p = len(self.lengths), self.batch_size, self.num_replicas
        n_batches = n // bs if self.drop_last else math.ceil(n / bs)
        if p == 1:
            return n_batches
        if self.drop_last:
            return n_batches // p
        return math.ceil(n / (bs * p))


def first_occurrence_mask(index: torch.Tensor) -> torch.Tensor:
    """Boolean mask keeping the first row of each distinct value of ``index`` (N,)."""
    values = index.tolist()
    seen: set[int] = set()
    mask = []
    for value in values:
        mask.append(value not in seen)
        seen.add(value)
    return torch.tensor(mask, dtype=torch.bool)


def batch_padding_ratio(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Padded samples / real samples when each batch is padded to its longest item."""
    lengths = np.asarray(lengths, dtype=np.int64)
    padded = real = 0
    for batch in batches:
        if len(batch) == 0:
            continue
        sizes = lengths[np.asarray(batch, dtype=np.int64)]
        real += int(sizes.sum())
        padded += int(sizes.max()) * len(sizes) - int(sizes.sum())
    return padded / real if real else 0.0
