"""Recipes: the typed configs every member shares and their YAML mapping.

``Recipe`` holds the sections every recipe has (data, loss, train, predict); members subclass it with their
own model sections.

Each component has one dataclass, the only place its defaults live. A recipe
is plain data: ``from_dict`` maps it onto the dataclass tree, refusing unknown
keys and values of the wrong type with the dotted path of the offending key.
Overrides are ``dotted.key=value`` strings whose value is parsed as YAML
(``optim.lr=1e-5``, ``data.dev_speakers=[19,20]``). No objects are built from
YAML, nothing is evaluated.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TypeVar, Union

import yaml

from abhinaya.nn.loss_config import LossConfig

T = TypeVar("T")


class ConfigError(ValueError):
    """A recipe or override that does not fit the configuration classes."""


def _is_optional(tp) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            return True, (args[0] if len(args) == 1 else Union[tuple(args)])
    return False, tp


def _convert(value: Any, tp: Any, where: str) -> Any:
    optional, inner = _is_optional(tp)
    if value is None:
        if optional or tp is Any:
            return None
        raise ConfigError(f"{where}: may not be null")
    tp = inner
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} fits none of {tp}")
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        args = typing.get_args(tp)
        value_tp = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, value_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if typing.get_origin(tp) is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(tp))}")
    return value


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) mapping; unknown keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown key(s) {', '.join(prefix + k for k in unknown)}; "
            f"{where or cls.__name__} accepts: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _convert(value, hints[name], key)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where or cls.__name__}: {err}") from None


def to_dict(obj: Any) -> Any:
    """Plain-data form of a config (dataclasses -> dicts, tuples -> lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` -> (["a", "b"], parsed YAML value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.subkey=value")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """A copy of ``data`` with each dotted override set (validation happens
    when the result is mapped onto the dataclasses)."""
    import copy

    result = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            if isinstance(node, list):  # a list of named sections (data.corpora.ravdess.dev_speakers=[...])
                node = _named_item(node, part, text)
                continue
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, (dict, list)):
                raise ConfigError(f"override {text!r}: {part} is not a section")
            node = child
        if isinstance(node, list):
            raise ConfigError(f"override {text!r}: name a field of one item of the list ({path[-2]}.NAME.FIELD=...)")
        node[path[-1]] = value
    return result


def _named_item(items: list, name: str, text: str) -> dict:
    """The item of a list of sections whose ``name`` is ``name`` (or at index ``name``)."""
    for item in items:
        if isinstance(item, dict) and str(item.get("name")) == name:
            return item
    if name.isdigit() and int(name) < len(items) and isinstance(items[int(name)], dict):
        return items[int(name)]
    names = [str(item.get("name")) for item in items if isinstance(item, dict)]
    raise ConfigError(f"override {text!r}: no item named {name!r} (there are {', '.join(names) or 'none'})")


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: recipe not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping at the top level")
    return data


def write_yaml(path: str | Path, data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(to_dict(data), sort_keys=False, allow_unicode=True), encoding="utf-8")
    tmp.replace(path)
    return path


# --- the sections every recipe has -------------------------------------------------------------

SCHEDULES = ("linear", "cosine", "constant")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")


@dataclass
class TrainConfig:
    """Attributes:
    epochs: passes over the training split.
    batch_size: utterances per step and process; the effective batch is
        batch_size * grad_accum * processes.
    grad_accum: gradient accumulation steps.
    encoder_lr / head_lr: learning rates of the pretrained part and of the new
        parts (pooling, head); members decide which parameter is which.
    weight_decay: AdamW weight decay.
    warmup_ratio: share of optimizer steps with linear warm-up.
    schedule: linear / cosine decay after warm-up, or constant.
    max_grad_norm: gradient clipping (0 = off).
    mixed_precision: auto (bf16 on GPUs that have it, else fp16 on GPUs, none on CPU), no, fp16, bf16.
    seed: seeds Python, numpy, torch and the data order.
    patience: stop after this many epochs without a better dev score (0 = never).
    selection_metric: dev metric for model selection (macro_f1, ua, wa, weighted_f1).
    keep: the weights the run keeps: "best" (the epoch with the best dev score), "last" (the final epoch; dev
        is still scored and logged every epoch, and ``patience`` still stops on it) or "average" (the mean of
        the weights at the ends of the last ``average_epochs`` epochs, a uniform stochastic weight average; dev is
        scored on each epoch and once more on the average). With a learning rate that decays to zero and a small
        dev set, the last epoch or the average can be the steadier choice (BENCHMARKS.md, S1 and S2).
    average_epochs: how many final epochs ``keep: average`` averages. If ``patience`` stops the run before that
        window, the last epoch is kept.
    probe_epochs: epochs at the start in which only the new parts (the groups whose name starts with "head":
        pooling, head) train and the pretrained part stays as loaded; it joins afterwards with its own warm-up and
        decay over the remaining steps. Linear probing, then fine-tuning (Kumar et al., 2022): a random head's first
        gradients do not reach, and distort, the pretrained features. 0 = everything trains from the start.
    balanced_dev: select on a class-balanced subset of dev (ABHINAYA: 326 per class).
    balanced_dev_per_class: utterances per class in that subset (default: the rarest class's count).
    eval_batch_size: batch size for dev and prediction (default: 2 * batch_size).
    bucket_multiplier: length bucketing: batches are formed within random pools of batch_size * this.
    checkpoint_every: also checkpoint every this many optimizer steps within an epoch (0 = epoch ends only).
    num_workers: data-loader worker processes.
    threads: torch CPU threads (0 = torch's default).
    progress: show progress bars.
    """

    epochs: int = 10
    batch_size: int = 8
    grad_accum: int = 1
    encoder_lr: float = 3e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    schedule: str = "linear"
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"
    seed: int = 0
    patience: int = 0
    selection_metric: str = "macro_f1"
    keep: str = "best"
    average_epochs: int = 3
    probe_epochs: int = 0
    balanced_dev: bool = False
    balanced_dev_per_class: int | None = None
    eval_batch_size: int | None = None
    bucket_multiplier: int = 50
    checkpoint_every: int = 0
    num_workers: int = 0
    threads: int = 0
    progress: bool = True

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if self.selection_metric not in ("macro_f1", "ua", "wa", "weighted_f1"):
            raise ValueError(f"selection_metric must be macro_f1, ua, wa or weighted_f1, got {self.selection_metric!r}")
        if self.keep not in ("best", "last", "average"):
            raise ValueError(f"keep must be best, last or average, got {self.keep!r}")
        if self.keep == "average" and not 1 <= self.average_epochs <= self.epochs:
            raise ValueError(f"average_epochs must be between 1 and epochs ({self.epochs}), got {self.average_epochs}")
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0 <= self.probe_epochs < self.epochs:
            raise ValueError(f"probe_epochs must be at least 0 and less than epochs ({self.epochs}), got {self.probe_epochs}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError("warmup_ratio must be in [0, 1)")


SPEAKER_SOURCES: tuple[str, ...] = ("manifest", "filename", "folder", "none")


@dataclass
class PredictConfig:
    """How a trained member predicts (dev scoring during training and ``abhinaya predict`` alike).

    Attributes:
    speaker_norm: per-speaker normalisation of the pooled vector at the head's input. Every speaker's pooled vectors
        are moved so that their mean becomes the reference mean (``v - mean_speaker + mean_reference``) before the
        head: what is the same in all of a speaker's utterances (voice, microphone, room) is removed, what differs
        between them (the emotion) stays. It uses the speaker's unlabelled utterances only, never a label.
        The reference is the mean pooled vector of the clean (un-augmented) training utterances under the selected
        weights, saved in the run folder (``reference_mean.safetensors``); per-epoch dev scoring during training,
        which selects the epoch, uses the running mean the head norm keeps instead. Utterances without a speaker
        keep their vector, so their prediction does not depend on the other inputs. It assumes a speaker's
        utterances show more than one emotion. Members with a pooled vector and a running mean at the head (S1
        with ``model.head_norm``; S2 / ST1 with a classifier head) support it.
    speaker_norm_prior: how many utterances the reference mean counts as in each speaker's mean (shrinkage): a
        speaker with ``n`` utterances is moved by ``n / (n + prior)`` of the way, so a speaker with one or two
        utterances barely moves and one with 60 nearly fully. 0 = the speaker's own mean alone.
    speaker_from: where ``abhinaya predict`` takes the speakers from (never guessed):
        ``manifest`` (a manifest row's ``speaker``; audio files given directly have none), ``filename`` (the
        speaker in the file name under the run's corpus naming, RAVDESS actor or EmoDB speaker), ``folder`` (the
        folder holding the audio file; refused where folder names read as emotion labels, as with data filed
        ``Angry/ Happy/``), ``none`` (no grouping: normalisation does nothing). Manifest speakers whose names read
        as emotion labels switch the normalisation off with a warning.
    """

    speaker_norm: bool = False
    speaker_norm_prior: float = 10.0
    speaker_from: str = "manifest"

    def __post_init__(self):
        if self.speaker_norm_prior < 0:
            raise ValueError(f"speaker_norm_prior must be >= 0, got {self.speaker_norm_prior}")
        if self.speaker_from not in SPEAKER_SOURCES:
            raise ValueError(f"speaker_from must be one of {', '.join(SPEAKER_SOURCES)}, got {self.speaker_from!r}")


BALANCE_MODES: tuple[str, ...] = ("corpus", "none")


@dataclass
class CorpusSource:
    """One corpus of a recipe that trains on several (``data.corpora``).

    Attributes:
        name: how the corpus is called in the run: speaker ids become ``<name>:<speaker>`` (two corpora's "03" never
            merge), ``data.roots.<name>`` sets its folder, figures are reported per name.
        corpus: layout of ``root`` (a preparer name); default: ``name``.
        root / manifest: the corpus folder (prepared into the run folder) or a prepared manifest.
        dev_speakers / test_speakers: this corpus's speakers (its own ids) moved to dev / test.
        label_map: its labels renamed into the model's label set (``{calm: neutral}``); a label mapped to null is
            left out, as are those in ``drop_labels``.
        weight: its share of each training epoch relative to the others, with ``data.balance: corpus``.
        prepare: options of its preparer, as ``data.prepare`` for one corpus (``{custom_labels: true}`` for a CSV
            whose labels are the user's own, then renamed by ``label_map``).
    """

    name: str = ""
    corpus: str | None = None
    root: str | None = None
    manifest: str | None = None
    dev_speakers: list[str] = field(default_factory=list)
    test_speakers: list[str] = field(default_factory=list)
    label_map: dict[str, str | None] = field(default_factory=dict)
    drop_labels: list[str] = field(default_factory=list)
    weight: float = 1.0
    prepare: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not str(self.name).replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"a corpus of data.corpora needs a name of letters, digits, - and _ (got {self.name!r})")
        if not self.weight > 0:
            raise ValueError(f"data.corpora {self.name}: weight must be positive, got {self.weight}")


@dataclass
class DataConfig:
    """Where the utterances of an experiment come from.

    Attributes:
        corpus: layout of ``root`` (a preparer name: ravdess, emodb, msp-podcast, meld, csv).
        root: corpus folder; the manifest is prepared from it when ``manifest`` is not given.
        manifest: a prepared JSONL manifest (overrides ``root``).
        train_split / dev_split: split names used for training and model selection.
        dev_speakers / test_speakers: speakers moved to dev / test (never trained on).
        labels: class order of the model; default: the corpus's label set, else the training labels (with
            several corpora: every class of any corpus, in the canonical order).
        drop_labels: classes left out of the experiment (their utterances are ignored).
        corpora: several corpora in one model (``CorpusSource`` each; data/multi_corpus.py). Each keeps its own
            speakers and dev / test speakers; a class a corpus lacks is masked out of the loss of its utterances.
        roots: ``{name: folder}`` for the corpora of ``corpora`` (``--set data.roots.ravdess=DIR``).
        balance: ``corpus``: each training epoch draws the corpora in proportion to their ``weight`` (a small corpus
            is repeated, a large one subsampled); ``none``: every utterance once.
        prepare: options of the corpus's preparer (``abhinaya prepare CORPUS --help``), e.g. ``{keep_unlabelled:
            true}`` for MSP-Podcast's X utterances, which soft-label training uses.
    """

    corpus: str | None = None
    root: str | None = None
    manifest: str | None = None
    train_split: str = "train"
    dev_split: str = "dev"
    dev_speakers: list[str] = field(default_factory=list)
    test_speakers: list[str] = field(default_factory=list)
    labels: list[str] | None = None
    drop_labels: list[str] = field(default_factory=list)
    corpora: list[CorpusSource] = field(default_factory=list)
    roots: dict[str, str] = field(default_factory=dict)
    balance: str = "corpus"
    prepare: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.balance not in BALANCE_MODES:
            raise ValueError(f"data.balance must be one of {', '.join(BALANCE_MODES)}, got {self.balance!r}")
        if self.corpora:
            single = [k for k in ("corpus", "root", "manifest") if getattr(self, k)]
            if single or self.dev_speakers or self.test_speakers:
                raise ValueError(
                    "data.corpora lists the corpora; data.corpus, root, manifest, dev_speakers and test_speakers "
                    "belong to each corpus of the list instead"
                )
            names = [c.name for c in self.corpora]
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"data.corpora: the name(s) {', '.join(repeated)} are used twice")
        unknown = sorted(set(self.roots) - {c.name for c in self.corpora})
        if unknown:
            raise ValueError(f"data.roots names {', '.join(unknown)}, which data.corpora does not list "
                             f"({', '.join(c.name for c in self.corpora) or 'empty'})")



@dataclass
class Recipe:
    """Sections every recipe has; members subclass it with their own."""

    member: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)


