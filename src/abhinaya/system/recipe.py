"""The system recipe: one corpus, several members, one ensemble.

A system recipe (``recipes/ravdess/abhinaya.yaml``) names the data once, how utterances are transcribed when a
member reads text, each member (a member recipe with overrides, or a run folder trained elsewhere), and how the
members' predictions are combined. ``abhinaya run`` carries it out stage by stage (``system.runner``).

    name: abhinaya-ravdess
    data: {corpus: ravdess, root: null, dev_speakers: ["19", "20"]}
    transcribe: {model: whisper-base, backend: ctranslate2, language: en, overwrite: true}
    members:
      s1: {recipe: s1.yaml}                    # relative to this file
      s2: {recipe: s2.yaml, set: ["train.epochs=4"]}
      mine: {run: /path/to/a/run/folder}       # joined as it is, not trained
    ensemble: {tiebreak: s2}

Command-line overrides address the system (``--set ensemble.tiebreak=s1``) or, led by a member's name, that
member's recipe (``--set s1.train.epochs=4``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from abhinaya.asr.transcribe import TranscriptionConfig
from abhinaya.recipes import (
    ConfigError,
    DataConfig,
    apply_overrides,
    from_dict,
    parse_override,
    read_yaml,
)

# Ensemble methods a system can report and choose among (evaluation.combiners).
SYSTEM_METHODS = ("majority", "soft", "weighted", "stacking", "best_member")
SUBMISSION_FORMATS = ("msp",)


@dataclass
class MemberSpec:
    """One member of the system: ``recipe`` (a member recipe YAML, relative to the system recipe) with ``set``
    overrides, or ``run``: a run folder trained elsewhere (another machine, ``abhinaya train``), joined as it is."""

    recipe: str | None = None
    set: list[str] = field(default_factory=list)
    run: str | None = None

    def __post_init__(self) -> None:
        if (self.recipe is None) == (self.run is None):
            raise ValueError("give either recipe (to train the member) or run (a trained run folder), not both")


@dataclass
class TranscribeSpec(TranscriptionConfig):
    """How utterances are transcribed for the members that read text (``TranscriptionConfig``), and whether
    transcripts replace the texts a corpus comes with (``overwrite``: the members then read at training what they
    will read at prediction, where no text is given)."""

    overwrite: bool = False


@dataclass
class EnsembleSpec:
    """How the members are combined.

    Attributes:
        methods: the ensemble methods fitted on dev and reported (``SYSTEM_METHODS``).
        tiebreak: the member whose label wins a tied majority vote (ABHINAYA: S2, its best member on validation).
        choose: ``dev``: the method with the highest cross-fitted dev score is the system's; or one method's name.
        folds: folds of the cross-fitting on dev (by speaker where dev has several).
        metric: the score the choice maximises.
    """

    methods: list[str] = field(default_factory=lambda: list(SYSTEM_METHODS))
    tiebreak: str | None = None
    choose: str = "dev"
    folds: int = 5
    metric: str = "macro_f1"

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in SYSTEM_METHODS]
        if unknown or not self.methods:
            raise ValueError(f"ensemble.methods: {unknown or 'empty'}; choose among {', '.join(SYSTEM_METHODS)}")
        if "majority" not in self.methods:
            self.methods.insert(0, "majority")  # ABHINAYA's rule is always reported
        if self.choose != "dev" and self.choose not in self.methods:
            raise ValueError(f"ensemble.choose must be 'dev' or one of ensemble.methods, got {self.choose!r}")
        if self.folds < 2:
            raise ValueError("ensemble.folds must be 2 or more")


@dataclass
class SystemRecipe:
    """A whole system: data, transcription, members, ensemble. ``submission: msp`` also writes the challenge
    submission file of the test split."""

    name: str = "system"
    data: DataConfig = field(default_factory=DataConfig)
    transcribe: TranscribeSpec = field(default_factory=TranscribeSpec)
    members: dict[str, MemberSpec] = field(default_factory=dict)
    ensemble: EnsembleSpec = field(default_factory=EnsembleSpec)
    submission: str | None = None

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("a system recipe needs members (members: {s1: {recipe: s1.yaml}, ...})")
        clash = sorted(set(self.members) & SECTIONS)
        if clash:
            raise ValueError(f"member name(s) {clash} are names of recipe sections; rename them")
        if self.ensemble.tiebreak is not None and self.ensemble.tiebreak not in self.members:
            raise ValueError(f"ensemble.tiebreak {self.ensemble.tiebreak!r} is not a member ({', '.join(self.members)})")
        if self.submission is not None and self.submission not in SUBMISSION_FORMATS:
            raise ValueError(f"submission must be one of {', '.join(SUBMISSION_FORMATS)} or null")


SECTIONS = {"name", "data", "transcribe", "members", "ensemble", "submission"}


def split_overrides(data: dict, overrides: Iterable[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Overrides of the system itself, and per member those led by its name (``s1.train.epochs=4``)."""
    members = data.get("members") or {}
    system, per_member = [], {}
    for text in overrides:
        path, _ = parse_override(text)
        if path[0] in members and path[0] not in SECTIONS:
            per_member.setdefault(path[0], []).append(text.split(".", 1)[1])
        else:
            system.append(text)
    return system, per_member


def load_system_recipe(path: str | Path, overrides: Iterable[str] = ()) -> SystemRecipe:
    """A system recipe YAML with overrides. Member recipe and run paths are made absolute (relative to the YAML's
    folder), so the resolved recipe saved in the run folder stands on its own."""
    path = Path(path)
    raw = read_yaml(path)
    if "member" in raw and "members" not in raw:
        raise ConfigError(f"{path}: a member recipe (member: {raw['member']}); `abhinaya run` takes a system recipe "
                          "with members (recipes/*/abhinaya.yaml); train one member with `abhinaya train`")
    system_overrides, member_overrides = split_overrides(raw, overrides)
    data = apply_overrides(raw, system_overrides)
    for name, extra in member_overrides.items():
        entry = data["members"][name] or {}
        entry["set"] = [*(entry.get("set") or []), *extra]
        data["members"][name] = entry
    try:
        recipe = from_dict(SystemRecipe, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    base = path.resolve().parent
    for spec in recipe.members.values():
        if spec.recipe is not None:
            spec.recipe = str((base / spec.recipe).resolve()) if not Path(spec.recipe).is_absolute() else spec.recipe
        if spec.run is not None:
            spec.run = str((base / spec.run).resolve()) if not Path(spec.run).is_absolute() else spec.run
    for key in ("root", "manifest"):
        value = getattr(recipe.data, key)
        if value is not None and not Path(value).is_absolute():
            # corpus paths given on the command line are relative to where the command runs
            setattr(recipe.data, key, str(Path(value).resolve()))
    return recipe
