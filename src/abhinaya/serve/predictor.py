"""The models a service holds: one member run, or a whole system (every member and its fitted ensemble), loaded
once at start-up and reused by every batch.

Uploads arrive decoded (``upload.Clip``); each member gets them the way its own dataset would give them to it from
a file, built from memory instead of from a path:

- ``s1``: ``WaveformDataset``, the inference side of ``AudioDataset`` (the clip at the member's rate, cut to its
  first ``audio.max_eval_seconds``, normalised when ``audio.normalize``);
- ``s2`` / ``st1``: the same waveforms inside the member's ``PromptedAudioDataset`` (ST1's transcript included);
- ``egemaps``: openSMILE functionals of the clip at 16 kHz (``FeatureDataset``);
- ``t1`` / ``t2``: the member's own text dataset of the transcripts.

Transcripts (systems with a text-reading member) come from the system's Whisper (its ``transcribe`` section),
decoded from the waveforms in memory. The members' on-disk feature caches are not used: the service writes nothing.

Speakers. An item has a speaker only when its request named one; the key is scoped to that request, so
utterances are normalised together only with the other files of the same request, never with another client's.
Items without a speaker are predicted on their own: their result does not depend on what else shares the batch.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance
from abhinaya.predict.engine import predict_probabilities
from abhinaya.predictions import PredictionTable, table_from_probs
from abhinaya.runs import LoadedRun, load_run, load_run_recipe
from abhinaya.serve.upload import Clip

# Members whose inputs can be built from an uploaded waveform (and, for the text readers, its transcript).
SERVED_MEMBERS = ("s1", "s2", "st1", "t1", "t2", "egemaps")
TEXT_MEMBERS = ("st1", "t1", "t2")


class ServeError(ValueError):
    """A run folder the service cannot serve."""


@dataclass
class ServeItem:
    """One uploaded file in a batch: ``id`` unique in the batch; ``speaker`` the speaker its request named (or
    None) and ``group`` the key it is normalised under, scoped to its request; ``text`` its transcript (systems
    with text members)."""

    id: str
    clip: Clip
    speaker: str | None = None
    group: str | None = None
    text: str | None = None

    def utterance(self, named: bool = False) -> Utterance:
        """The item as a manifest row: its speaker is the normalisation group, or with ``named`` the speaker's
        name (what a text template's ``{speaker}`` shows)."""
        speaker = self.speaker if named else self.group
        return Utterance(id=self.id, audio=None, speaker=speaker, text=self.text, duration=self.clip.duration)


@dataclass
class ItemResult:
    """What the service answers for one item: ``label`` and ``probabilities`` ({label: p}; None for an ensemble
    that yields labels only), whether per-speaker normalisation was applied, notes (audio cut), for systems each
    member's answer; ``error`` when nothing could predict it."""

    label: str | None = None
    probabilities: dict[str, float] | None = None
    speaker_norm: bool = False
    notes: list[str] = field(default_factory=list)
    members: dict[str, dict[str, Any]] | None = None
    error: str | None = None


# ----------------------------------------------------------------------------- datasets built from memory
def _normalize(wave: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance, as ``AudioConfig.normalize`` asks (the same arithmetic as the dataset's)."""
    mean = float(np.mean(wave, dtype=np.float64))
    std = float(np.std(wave, dtype=np.float64))
    return ((wave - mean) / max(std, 1e-6)).astype(np.float32)


class WaveformDataset:
    """The inference side of ``AudioDataset`` for decoded clips: items ``{"index", "id", "waveform", "label"}``
    with the clip at ``config.sample_rate``, cut to its first ``config.max_eval_seconds`` (a note says so),
    normalised when ``config.normalize``. ``label`` is always -1."""

    def __init__(self, items: Sequence[ServeItem], config):
        self.config = config
        self.errors: list[str] = []
        self.notes: list[str] = []
        self._items = list(items)
        self._utterances = tuple(item.utterance() for item in self._items)
        self._waves = []
        limit = config.max_eval_samples
        for item in self._items:
            wave = item.clip.at_rate(int(config.sample_rate))
            if wave.shape[0] > limit:
                self.notes.append(f"{item.id}: {wave.shape[0] / config.sample_rate:.1f} s long; only the first "
                                  f"{config.max_eval_seconds:.1f} s are used")
                wave = wave[:limit]
            self._waves.append(_normalize(wave) if config.normalize else wave)

    utterances = property(lambda self: self._utterances)
    ids = property(lambda self: [u.id for u in self._utterances])
    labels = property(lambda self: [-1] * len(self._items))
    lengths = property(lambda self: [int(w.shape[0]) for w in self._waves])

    def set_epoch(self, epoch: int) -> None:
        """Inference only: nothing changes between epochs."""

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        return {"index": index, "id": self._items[index].id,
                "waveform": torch.tensor(self._waves[index], dtype=torch.float32), "label": -1}


class FeatureDataset:
    """The inference side of ``EgemapsDataset`` for decoded clips: items ``{"index", "id", "features", "label"}``
    with openSMILE's functionals of the clip at 16 kHz. A clip openSMILE cannot analyse is left out with a reason
    in ``errors``."""

    def __init__(self, items: Sequence[ServeItem], smile, feature_set: str):
        from abhinaya.data.egemaps import SAMPLE_RATE, feature_count

        count = feature_count(feature_set)
        self.errors: list[str] = []
        self.notes: list[str] = []
        kept, vectors = [], []
        for item in items:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Segment too short")  # answered as an error below
                frame = smile.process_signal(item.clip.at_rate(SAMPLE_RATE), SAMPLE_RATE)
            vector = np.asarray(frame.to_numpy(), dtype=np.float32).reshape(-1)
            if vector.shape != (count,) or not np.isfinite(vector).all():
                self.errors.append(f"{item.id}: no finite {feature_set} functionals (audio too short to analyse?)")
                continue
            kept.append(item)
            vectors.append(vector)
        self._items, self._vectors = kept, vectors
        self._utterances = tuple(item.utterance() for item in kept)

    utterances = property(lambda self: self._utterances)
    ids = property(lambda self: [u.id for u in self._utterances])
    labels = property(lambda self: [-1] * len(self._items))
    lengths = property(lambda self: [1] * len(self._items))

    def set_epoch(self, epoch: int) -> None:
        """Inference only."""

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        return {"index": index, "id": self._items[index].id, "features": torch.from_numpy(self._vectors[index].copy()),
                "label": -1}


# ----------------------------------------------------------------------------- one member
class MemberModel:
    """A member's loaded run and how the service feeds it. ``reference``: the mean per-speaker normalisation moves
    speakers to, or None where the member has none (normalisation is then never applied)."""

    def __init__(self, name: str, run: LoadedRun):
        self.name = name
        self.run = run
        self.kind = run.recipe.member
        if self.kind not in SERVED_MEMBERS:
            raise ServeError(f"{run.run_dir}: member {self.kind!r} cannot be served (served: "
                             f"{', '.join(SERVED_MEMBERS)})")
        # The frozen encoders' on-disk feature cache (S2 / ST1) stays out of the service: nothing is written.
        if hasattr(run.model, "cache"):
            run.model.cache = None
        self.reference = self._reference()
        self._smile = None
        if self.kind == "egemaps":
            from abhinaya.data.egemaps import import_opensmile

            opensmile = import_opensmile()
            self._smile = opensmile.Smile(
                feature_set=opensmile.FeatureSet[run.recipe.model.feature_set],
                feature_level=opensmile.FeatureLevel.Functionals,
            )

    def _reference(self) -> torch.Tensor | None:
        try:
            running = self.run.member.pooled_mean(self.run.model)
        except (ValueError, NotImplementedError):
            return None
        return self.run.reference_mean if self.run.reference_mean is not None else running

    @property
    def label_set(self) -> LabelSet:
        return self.run.label_set

    @property
    def reads_text(self) -> bool:
        return self.kind in TEXT_MEMBERS

    @property
    def min_seconds(self) -> float:
        audio = getattr(self.run.recipe, "audio", None)
        return float(audio.min_seconds) if audio is not None else 0.1

    @property
    def max_input_seconds(self) -> float:
        """The longest audio the member takes whole (``audio.max_eval_seconds``; 30 s for members without audio)."""
        audio = getattr(self.run.recipe, "audio", None)
        return float(audio.max_eval_seconds) if audio is not None else 30.0

    @property
    def normalises_speakers(self) -> bool:
        """Whether a request that names a speaker gets per-speaker normalisation (the run's ``predict.speaker_norm``
        and a reference mean to move to)."""
        if self.kind in ("t1", "t2"):  # their datasets carry the speaker's name, not the request's group
            return False
        return bool(self.run.recipe.predict.speaker_norm) and self.reference is not None

    def dataset(self, items: Sequence[ServeItem]):
        member, recipe = self.run.member, self.run.recipe
        if self.kind == "s1":
            return WaveformDataset(items, recipe.audio)
        if self.kind in ("s2", "st1"):
            from abhinaya.members.s2 import PromptedAudioDataset

            errors = []
            if recipe.prompt.uses_text:
                usable = [item for item in items if item.text and item.text.strip()]
                errors = [f"{item.id}: no transcript (no speech recognised)" for item in items if item not in usable]
                items = usable
            data = PromptedAudioDataset(WaveformDataset(items, recipe.audio), recipe.prompt, member.tokenizer,
                                        False, recipe.train.seed)
            data.errors = errors + data.errors
            return data
        if self.kind == "egemaps":
            return FeatureDataset(items, self._smile, recipe.model.feature_set)
        return member.dataset([item.utterance(named=True) for item in items], None, train=False, on_error="skip")

    def predict(self, items: Sequence[ServeItem]) -> tuple[PredictionTable, list[str], list[str], bool]:
        """The member's table for ``items`` (rows of the usable ones), the reasons others were left out, notes,
        and whether per-speaker normalisation was applied."""
        dataset = self.dataset(items)
        if len(dataset) == 0:
            return table_from_probs([], np.zeros((0, len(self.label_set))), self.label_set, self.name), \
                list(dataset.errors), list(getattr(dataset, "notes", [])), False
        normalise = self.normalises_speakers and any(item.group for item in items)
        config = replace(self.run.recipe.predict, speaker_norm=normalise, speaker_from="manifest")
        recipe = self.run.recipe
        batch = recipe.train.eval_batch_size or 2 * recipe.train.batch_size
        ids, probs = predict_probabilities(self.run.member, self.run.model, dataset, batch, progress=False,
                                           desc=self.name, predict=config,
                                           reference=self.reference if normalise else None)
        table = table_from_probs(ids, probs, self.label_set, source=self.name)
        return table, list(dataset.errors), list(getattr(dataset, "notes", [])), normalise


def _probabilities(label_set: Sequence[str], row) -> dict[str, float]:
    return {label: float(p) for label, p in zip(label_set, row)}


def _about(item: ServeItem, messages: Sequence[str]) -> list[str]:
    """The messages (``"ID: text"``, as datasets write them) about ``item``, naming it by the client's file name."""
    tag = f"{item.id}:"
    return [f"{item.clip.name!r}: {m[len(tag):].strip()}" for m in messages if m.startswith(tag)]


# ----------------------------------------------------------------------------- what the service serves
class ServedModel:
    """A member run or a system run, loaded. ``predict(items)`` answers a batch, one ``ItemResult`` per item."""

    kind: str = ""
    run_dir: Path
    labels: list[str]
    members: dict[str, MemberModel]
    ensemble: str | None = None

    @property
    def min_seconds(self) -> float:
        return max(m.min_seconds for m in self.members.values())

    @property
    def max_input_seconds(self) -> float:
        """The longest audio every member takes whole; longer uploads are cut into segments."""
        return min(m.max_input_seconds for m in self.members.values())

    @property
    def speaker_norm(self) -> bool:
        """Whether any member applies per-speaker normalisation to requests that name a speaker."""
        return any(m.normalises_speakers for m in self.members.values())

    def describe(self) -> dict[str, Any]:
        return {
            "run": self.run_dir.name,
            "kind": self.kind,
            "members": {name: m.kind for name, m in self.members.items()},
            "ensemble": self.ensemble,
            "labels": list(self.labels),
            "speaker_norm": self.speaker_norm,
        }

    def predict(self, items: Sequence[ServeItem]) -> list[ItemResult]:
        raise NotImplementedError


class MemberService(ServedModel):
    """One member's run folder."""

    kind = "member"

    def __init__(self, run_dir: str | Path, device: str = "cpu"):
        self.run_dir = Path(run_dir)
        recipe = load_run_recipe(self.run_dir)  # checked before the model is loaded
        if recipe.member not in SERVED_MEMBERS:
            raise ServeError(f"{self.run_dir}: member {recipe.member!r} cannot be served")
        if recipe.member in TEXT_MEMBERS:
            raise ServeError(f"{self.run_dir}: member {recipe.member} reads transcripts, and a member's run folder "
                             "does not say which Whisper wrote them; serve the system run folder it belongs to")
        name = self.run_dir.name
        self.members = {name: MemberModel(name, load_run(self.run_dir, device=device))}
        self.labels = list(self.members[name].label_set)

    def predict(self, items: Sequence[ServeItem]) -> list[ItemResult]:
        (model,) = self.members.values()
        table, errors, notes, normalised = model.predict(items)
        rows = table.by_id()
        results = []
        for item in items:
            if item.id not in rows:
                reasons = _about(item, errors)
                results.append(ItemResult(error=reasons[0] if reasons else f"{item.clip.name!r}: the member could "
                                                                           "not use it"))
                continue
            row = table.probs[rows[item.id]]
            results.append(ItemResult(
                label=table.labels[rows[item.id]], probabilities=_probabilities(self.labels, row),
                speaker_norm=normalised and item.group is not None,
                notes=_about(item, notes),
            ))
        return results


class SystemService(ServedModel):
    """A system run folder (``abhinaya run``): every member of the chosen ensemble, loaded once, and the ensemble
    fitted on dev. Members read the same uploads; text members read the transcripts of the system's Whisper."""

    kind = "system"

    def __init__(self, run_dir: str | Path, device: str = "cpu", report: Callable[[str], None] = print):
        from abhinaya.evaluation.combiners import FittedEnsemble
        from abhinaya.recipes import from_dict, read_yaml
        from abhinaya.runs import CONFIG_FILE, recipe_from_dict
        from abhinaya.system.recipe import SystemRecipe
        from abhinaya.system.runner import ENSEMBLE_FILE, MEMBERS_FILE, SYSTEM_FILE

        self.run_dir = Path(run_dir)
        self.report = report
        self.recipe = from_dict(SystemRecipe, read_yaml(self.run_dir / SYSTEM_FILE))
        members = self._read_json(MEMBERS_FILE)
        record = self._read_json(ENSEMBLE_FILE)
        self.fitted = FittedEnsemble.from_dict(record["system"])
        self.ensemble = str(record.get("chosen") or self.fitted.method)
        self.labels = list(self.fitted.label_set)
        folders = {}
        for name in self.fitted.members:
            folder = Path(members[name]["run"])
            folders[name] = folder if folder.is_absolute() else self.run_dir / folder
        # Every member's recipe is checked before any model is loaded.
        for name, folder in folders.items():
            kind = recipe_from_dict(read_yaml(folder / CONFIG_FILE), str(folder / CONFIG_FILE)).member
            if kind not in SERVED_MEMBERS:
                raise ServeError(f"{self.run_dir}: member {name} ({kind}) cannot be served")
        self.members = {}
        for position, (name, folder) in enumerate(folders.items(), start=1):
            report(f"[{position}/{len(folders)}] loading {name}: {folder}")
            self.members[name] = MemberModel(name, load_run(folder, device=device))
        self.transcriber = None
        self.transcription = None
        if any(m.reads_text for m in self.members.values()):
            from abhinaya.asr.transcribe import TranscriptionConfig, load_transcriber
            from abhinaya.recipes import to_dict

            spec = to_dict(self.recipe.transcribe)
            self.transcription = TranscriptionConfig(**{k: v for k, v in spec.items() if k != "overwrite"})
            report(f"loading the transcriber: {self.transcription.model}")
            self.transcriber = load_transcriber(self.transcription)

    def _read_json(self, name: str) -> dict:
        path = self.run_dir / name
        if not path.is_file():
            raise ServeError(f"{self.run_dir}: the system run is not finished ({name} is missing)")
        return json.loads(path.read_text(encoding="utf-8"))

    def transcribe(self, items: Sequence[ServeItem]) -> None:
        """Fill each item's ``text`` with the system's Whisper transcript (None where decoding failed), windows of
        30 s decoded ``batch_size`` at a time, longest first."""
        from abhinaya.asr.transcribe import split_windows
        from abhinaya.audio import DEFAULT_SAMPLE_RATE

        config = self.transcription
        windows = []
        for position, item in enumerate(items):
            parts = split_windows(item.clip.at_rate(DEFAULT_SAMPLE_RATE), DEFAULT_SAMPLE_RATE,
                                  long_form=config.long_form)
            windows += [(position, index, wave) for index, wave in enumerate(parts)]
        windows.sort(key=lambda w: -len(w[2]))
        texts: dict[tuple[int, int], str | None] = {}
        for start in range(0, len(windows), config.batch_size):
            chunk = windows[start : start + config.batch_size]
            try:
                decoded = list(self.transcriber.transcribe([w for _, _, w in chunk]))
            except Exception:  # noqa: BLE001 - retry alone: only the windows that fail by themselves lose text
                decoded = []
                for _, _, wave in chunk:
                    try:
                        decoded += list(self.transcriber.transcribe([wave]))
                    except Exception:  # noqa: BLE001
                        decoded.append(None)
            for (position, index, _), text in zip(chunk, decoded):
                texts[(position, index)] = text
        for position, item in enumerate(items):
            parts = [texts[key] for key in sorted(k for k in texts if k[0] == position)]
            item.text = None if any(p is None for p in parts) else " ".join(p for p in parts if p)

    def predict(self, items: Sequence[ServeItem]) -> list[ItemResult]:
        from abhinaya.system.runner import apply_ensemble

        if self.transcriber is not None:
            self.transcribe(items)
        tables: dict[str, PredictionTable] = {}
        errors: dict[str, list[str]] = {}
        notes: list[str] = []
        normalised: dict[str, bool] = {}
        for name, model in self.members.items():
            table, errors[name], member_notes, normalised[name] = model.predict(items)
            tables[name] = table
            notes += [n for n in member_notes if n not in notes]
        answered = {i for table in tables.values() for i in table.ids}
        results: dict[str, ItemResult] = {}
        usable = [item for item in items if item.id in answered]
        combined = None
        if usable:
            present = {name: table for name, table in tables.items()}
            combined = apply_ensemble(self.fitted, present, lambda _message: None, "request")
        rows = combined.by_id() if combined is not None else {}
        for item in items:
            if item.id not in rows:
                reasons = _about(item, [e for errs in errors.values() for e in errs])
                results[item.id] = ItemResult(error=reasons[0] if reasons else f"{item.clip.name!r}: no member "
                                                                               "could use it")
                continue
            row = rows[item.id]
            members: dict[str, dict[str, Any]] = {}
            for name, table in tables.items():
                own = table.by_id()
                if item.id in own:
                    members[name] = {"label": table.labels[own[item.id]],
                                     "probabilities": _probabilities(list(table.label_set), table.probs[own[item.id]])}
                else:
                    reasons = _about(item, errors[name])
                    members[name] = {"error": reasons[0] if reasons else "the member could not use it"}
            probs = None
            if combined.probs is not None:
                probs = _probabilities(list(combined.label_set), combined.probs[row])
            results[item.id] = ItemResult(
                label=combined.labels[row], probabilities=probs,
                speaker_norm=item.group is not None and any(normalised[n] for n in tables),
                notes=_about(item, notes), members=members,
            )
        return [results[item.id] for item in items]


def load_service(run_dir: str | Path, device: str | None = None, report: Callable[[str], None] = print) -> ServedModel:
    """The member run or system run in ``run_dir``, loaded (``ServeError`` / ``RunError`` when it cannot be)."""
    from abhinaya.system.predict import is_system_run

    from abhinaya.runs import is_onnx_file

    run_dir = Path(run_dir)
    if is_onnx_file(run_dir) and run_dir.is_file():
        return MemberService(run_dir, device="cpu")  # an ONNX export (abhinaya export onnx) runs on onnxruntime
    if not run_dir.is_dir():
        raise ServeError(f"{run_dir}: run folder not found")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if is_system_run(run_dir):
        return SystemService(run_dir, device=device, report=report)
    return MemberService(run_dir, device=device)


__all__ = [
    "FeatureDataset", "ItemResult", "MemberModel", "MemberService", "ServeError", "ServeItem", "ServedModel",
    "SystemService", "WaveformDataset", "load_service",
]
