"""``abhinaya run``: every stage of a system recipe, each cached by a hash of its inputs.

    DIR/
      system.yaml              the resolved system recipe
      stages.json              each stage's key, outputs and seconds (system.stages)
      run.log                  every message of every run, time-stamped (no progress-bar redraws)
      data/manifest.jsonl      the corpus, split by speaker; data/manifest.text.jsonl with transcripts
      members/<name>/          one run folder per trained member (as `abhinaya train` writes it)
      members.json             member name -> run folder (trained here or joined) and member kind
      predictions/<name>.<split>.csv   each member's and each ensemble method's predictions of dev and test
      ensemble.json            the methods fitted on dev, their cross-fitted dev scores, the choice and why
      report.html, report_*.png, metrics.json
      submission.csv           the challenge submission (recipes with submission: msp)

Stages: prepare, transcribe (when a member reads text and the corpus has none, or ``transcribe.overwrite``),
train (or join) each member, predict dev and test with each member, ensemble, report. A rerun reuses every stage
whose inputs did not change; an interrupted training resumes from its checkpoint.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from abhinaya.manifest import Utterance, read_manifest, write_manifest
from abhinaya.recipes import ConfigError, Recipe, to_dict, write_yaml
from abhinaya.system.recipe import SystemRecipe, load_system_recipe
from abhinaya.system.stages import (
    StageBook,
    file_fingerprint,
    folder_fingerprint,
    stage_key,
)

SYSTEM_FILE = "system.yaml"
MEMBERS_FILE = "members.json"
ENSEMBLE_FILE = "ensemble.json"
LOG_FILE = "run.log"
MANIFEST = "data/manifest.jsonl"
TEXT_MANIFEST = "data/manifest.text.jsonl"
PREDICTIONS_DIR = "predictions"
REPORT_FILE = "report.html"
METRICS_FILE = "metrics.json"
SUBMISSION_FILE = "submission.csv"
SYSTEM_TABLE = "system"
TRAIN_KEY_FILE = "system_stage_key.txt"  # in a member's run folder: the key of the training it holds  # predictions/system.<split>.csv: the chosen ensemble
EVAL_SPLITS = ("dev", "test")
# Bumped when what a stage writes changes, so older run folders redo it.
STAGE_VERSION = 1


class SystemRunError(ValueError):
    """A system recipe or run folder that cannot be carried out (one line naming what is wrong)."""


def split_of(utt: Utterance) -> str | None:
    """``dev``, ``test`` (any split named test*: MSP-Podcast's test sets) or None for the rest."""
    if utt.split == "dev":
        return "dev"
    if utt.split and utt.split.startswith("test"):
        return "test"
    return None


def member_kind(recipe_path: str) -> type:
    from abhinaya.members import get_member
    from abhinaya.recipes import read_yaml

    return get_member(str(read_yaml(recipe_path).get("member")))


@dataclass
class Stage:
    """One step of the run: ``action`` writes ``outputs`` (relative to the run folder)."""

    name: str
    what: str
    key: str
    outputs: list[str]
    action: Callable[[], None]
    # Whether an unfinished earlier attempt can be continued rather than restarted (member training).
    resumable: bool = False


@dataclass
class RunLog:
    """Messages to the terminal and, time-stamped, to ``run.log``."""

    path: Path
    echo: Callable[[str], None] = print

    def __call__(self, message: str) -> None:
        self.echo(message)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            for line in str(message).splitlines() or [""]:
                handle.write(f"{stamp}  {line}\n")


@dataclass
class SystemRun:
    """What ``run_system`` did: the stages in order with ``ran`` / ``reused`` / ``would run`` / ``would reuse``."""

    run_dir: Path
    statuses: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    chosen: str | None = None


class SystemPlan:
    """The stages of one system recipe in one run folder, with their keys (nothing is run to compute them)."""

    def __init__(self, recipe: SystemRecipe, run_dir: str | Path, *, progress: bool = True, log=print):
        self.recipe = recipe
        self.run_dir = Path(run_dir).resolve()
        self.progress = progress
        self.log = log
        self.stages: list[Stage] = []
        self._build()

    # ------------------------------------------------------------------ paths and recipes
    def path(self, relative: str) -> Path:
        return self.run_dir / relative

    def member_run_dir(self, name: str) -> Path:
        spec = self.recipe.members[name]
        return Path(spec.run) if spec.run is not None else self.run_dir / "members" / name

    def reads_text(self, name: str) -> bool:
        spec = self.recipe.members[name]
        if spec.run is not None:
            from abhinaya.runs import CONFIG_FILE

            return "text" in member_kind(str(Path(spec.run) / CONFIG_FILE)).inputs
        return "text" in member_kind(spec.recipe).inputs

    def member_recipe(self, name: str, manifest: Path) -> Recipe:
        """The member's recipe with its overrides, reading the system's prepared manifest (already split by
        speaker) and the system's label set."""
        from abhinaya.runs import load_recipe

        spec = self.recipe.members[name]
        data = self.recipe.data
        system = [
            f"data.manifest={json.dumps(str(manifest))}",
            "data.root=null",
            "data.dev_speakers=[]",
            "data.test_speakers=[]",
            f"data.corpus={json.dumps(data.corpus)}",
            f"data.drop_labels={json.dumps(list(data.drop_labels))}",
        ]
        if data.labels is not None:
            system.append(f"data.labels={json.dumps(list(data.labels))}")
        if not self.progress:
            system.append("train.progress=false")
        try:
            return load_recipe(spec.recipe, [*spec.set, *system])
        except ConfigError as err:
            raise SystemRunError(f"member {name}: {err}") from None

    # ------------------------------------------------------------------ the plan
    def _build(self) -> None:
        recipe = self.recipe
        data = recipe.data
        if data.manifest:
            source = file_fingerprint(data.manifest)
        elif data.root:
            if not Path(data.root).is_dir():
                raise SystemRunError(f"{data.root}: corpus folder not found (data.root)")
            source = folder_fingerprint(data.root)
        else:
            raise SystemRunError("the system recipe names no data: set data.root (a corpus folder) or data.manifest")
        prepare_key = stage_key(STAGE_VERSION, "prepare", to_dict(data), source)
        self.stages.append(Stage("prepare", "prepare the corpus and its speaker split", prepare_key, [MANIFEST],
                                 self._prepare))

        text_members = [name for name in recipe.members if self.reads_text(name)]
        text_key = prepare_key
        if text_members:
            text_key = stage_key(STAGE_VERSION, "transcribe", prepare_key, to_dict(recipe.transcribe))
            self.stages.append(Stage(
                "transcribe", f"transcripts for {', '.join(text_members)} ({recipe.transcribe.model})",
                text_key, [TEXT_MANIFEST], self._transcribe,
            ))

        self.member_keys: dict[str, str] = {}
        for name, spec in recipe.members.items():
            manifest_key = text_key if name in text_members else prepare_key
            manifest = self.path(TEXT_MANIFEST if name in text_members else MANIFEST)
            if spec.run is not None:
                key = stage_key(STAGE_VERSION, "join", self._run_fingerprint(name))
                self.stages.append(Stage(f"join {name}", f"join {name} from {spec.run}", key, [],
                                         lambda name=name, manifest=manifest: self._join(name, manifest)))
            else:
                member_recipe = to_dict(self.member_recipe(name, manifest))
                member_recipe["data"]["manifest"] = manifest_key  # the path does not matter; its content does
                member_recipe["train"].pop("progress", None)
                key = stage_key(STAGE_VERSION, "train", member_recipe)
                self.stages.append(Stage(
                    f"train {name}", f"train {name} ({member_recipe['member']})", key, [f"members/{name}/summary.json"],
                    lambda name=name, manifest=manifest, key=key: self._train(name, manifest, key),
                    resumable=True,
                ))
            predict_key = stage_key(STAGE_VERSION, "predict", key, manifest_key)
            self.member_keys[name] = predict_key
            self.stages.append(Stage(
                f"predict {name}", f"predict dev and test with {name}", predict_key,
                [f"{PREDICTIONS_DIR}/{name}.dev.csv"],
                lambda name=name, manifest=manifest: self._predict(name, manifest),
            ))
        ensemble_key = stage_key(STAGE_VERSION, "ensemble", self.member_keys, to_dict(recipe.ensemble))
        self.stages.append(Stage("ensemble", "fit the ensembles on dev and choose one", ensemble_key,
                                 [ENSEMBLE_FILE, f"{PREDICTIONS_DIR}/{SYSTEM_TABLE}.dev.csv"], self._ensemble))
        report_key = stage_key(STAGE_VERSION, "report", ensemble_key, recipe.name, recipe.submission)
        outputs = [REPORT_FILE, METRICS_FILE] + ([SUBMISSION_FILE] if recipe.submission else [])
        self.stages.append(Stage("report", "evaluate and write the report", report_key, outputs, self._report))

    def _run_fingerprint(self, name: str) -> dict:
        from abhinaya.runs import CONFIG_FILE, LABELS_FILE, WEIGHTS_FILE

        run = Path(self.recipe.members[name].run)
        missing = [f for f in (CONFIG_FILE, LABELS_FILE, WEIGHTS_FILE) if not (run / f).is_file()]
        if missing:
            raise SystemRunError(f"member {name}: {run} is not a finished run folder ({', '.join(missing)} missing)")
        return {f: file_fingerprint(run / f) for f in (CONFIG_FILE, LABELS_FILE, WEIGHTS_FILE)}

    # ------------------------------------------------------------------ stage actions
    def _utterances(self, text: bool = False) -> list[Utterance]:
        return read_manifest(self.path(TEXT_MANIFEST if text else MANIFEST))

    def _prepare(self) -> None:
        from abhinaya.data.utterances import load_experiment_utterances

        work = self.path("data")
        generated = work / "manifest.jsonl"
        if generated.is_file():
            generated.unlink()  # prepared afresh: the corpus or its split changed
        utterances = load_experiment_utterances(self.recipe.data, self.run_dir, log=self.log)
        counts = {split: sum(1 for u in utterances if split_of(u) == split) for split in EVAL_SPLITS}
        train = sum(1 for u in utterances if u.split == self.recipe.data.train_split)
        if not any(u.label is not None for u in utterances if split_of(u) == "dev"):
            raise SystemRunError(
                "the dev split has no labelled utterances: the ensemble is fitted on dev "
                "(set data.dev_speakers, or a manifest with a dev split)"
            )
        for split in EVAL_SPLITS:
            speakers = {u.speaker for u in utterances if split_of(u) == split and u.speaker is not None}
            trained = {u.speaker for u in utterances if u.split == self.recipe.data.train_split}
            shared = sorted(speakers & trained)
            if shared:
                self.log(f"warning: {split} shares speaker(s) {', '.join(shared[:5])} with train: its figures are "
                         "not speaker-independent")
        self.log(f"train {train}, dev {counts['dev']}, test {counts['test']} utterances")
        write_manifest(self.path(MANIFEST), utterances)

    def _transcribe(self) -> None:
        from abhinaya.asr.transcribe import TranscriptionConfig, transcribe_manifest

        spec = self.recipe.transcribe
        config = TranscriptionConfig(**{k: v for k, v in to_dict(spec).items() if k != "overwrite"})
        tmp = self.path(TEXT_MANIFEST + ".partial")
        if not tmp.is_file():
            shutil.copyfile(self.path(MANIFEST), tmp)
        # transcribe_manifest saves as it goes and skips rows with text, so an interrupted run resumes; with
        # overwrite, rows are blanked once, before the first attempt.
        if spec.overwrite and not self.path(TEXT_MANIFEST + ".blanked").is_file():
            write_manifest(tmp, [replace(u, text=None) for u in read_manifest(tmp)])
            self.path(TEXT_MANIFEST + ".blanked").touch()
        summary = transcribe_manifest(tmp, tmp, config, progress=self.progress,
                                      report=lambda message: self.log(f"failed: {message}"))
        self.log(summary.line())
        if summary.failed:
            raise SystemRunError(f"{summary.failed} utterance(s) could not be transcribed (listed above); rerun to retry")
        tmp.replace(self.path(TEXT_MANIFEST))
        self.path(TEXT_MANIFEST + ".blanked").unlink(missing_ok=True)

    def can_resume(self, stage: Stage) -> bool:
        """Whether a training stage holds an unfinished run started with its key (the same recipe and data)."""
        from abhinaya.runs import CHECKPOINT_DIR, CONFIG_FILE

        if not stage.resumable:
            return False
        run_dir = self.member_run_dir(stage.name.split(" ", 1)[1])
        stamp = run_dir / TRAIN_KEY_FILE
        return (
            (run_dir / CONFIG_FILE).is_file() and (run_dir / CHECKPOINT_DIR).is_dir()
            and stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == stage.key
        )

    def _train(self, name: str, manifest: Path, key: str) -> None:
        """Train the member into ``members/<name>``. An unfinished run started with the same key (the same recipe
        and data) resumes from its checkpoint; anything else there is replaced."""
        from abhinaya.train.loop import train

        run_dir = self.member_run_dir(name)
        stamp = run_dir / TRAIN_KEY_FILE
        resume = self.can_resume(next(s for s in self.stages if s.name == f"train {name}"))
        if resume:
            self.log(f"  {name}: resuming the interrupted training in {run_dir}")
        else:
            if run_dir.exists():
                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True)
            stamp.write_text(key + "\n", encoding="utf-8")
        def log(message: str) -> None:  # one member-name prefix, whether or not the trainer wrote its own
            self.log(f"  {message}" if message.startswith(f"{name}: ") else f"  {name}: {message}")

        train(self.member_recipe(name, manifest), run_dir, resume=resume, log=log)

    def _join(self, name: str, manifest: Path) -> None:
        """Check a run trained elsewhere: it must not have trained on a speaker the system evaluates."""
        from abhinaya.data.utterances import load_experiment_utterances
        from abhinaya.recipes import read_yaml
        from abhinaya.runs import CONFIG_FILE, recipe_from_dict

        run = Path(self.recipe.members[name].run)
        recipe = recipe_from_dict(read_yaml(run / CONFIG_FILE), str(run / CONFIG_FILE))
        held_out = {u.speaker for u in read_manifest(manifest) if split_of(u) and u.speaker is not None}
        try:
            theirs = load_experiment_utterances(recipe.data, run, log=lambda message: None)
        except (OSError, ValueError) as err:
            self.log(f"warning: {name}: the training data of {run} cannot be read ({err}); its speakers are not "
                     "checked against dev and test")
            return
        if recipe.data.corpus != self.recipe.data.corpus:
            self.log(f"note: {name} was trained on {recipe.data.corpus}, the system on {self.recipe.data.corpus}")
            return
        trained = {u.speaker for u in theirs if u.split == recipe.data.train_split and u.speaker is not None}
        shared = sorted(trained & held_out)
        if shared:
            raise SystemRunError(
                f"member {name}: {run} was trained on speaker(s) {', '.join(shared)}, which the system holds out for "
                "dev or test; its figures would not be speaker-independent"
            )
        self.log(f"{name}: {run} trained on {len(trained)} speaker(s), none of them in dev or test")

    def _predict(self, name: str, manifest: Path) -> None:
        import torch

        from abhinaya.predict.inputs import predict_utterances
        from abhinaya.predictions import write_predictions
        from abhinaya.runs import load_run

        device = "cuda" if torch.cuda.is_available() else "cpu"
        run = load_run(self.member_run_dir(name), device=device)
        utterances = read_manifest(manifest)
        for split in EVAL_SPLITS:
            chosen = [u for u in utterances if split_of(u) == split]
            path = self.path(f"{PREDICTIONS_DIR}/{name}.{split}.csv")
            if not chosen:
                path.unlink(missing_ok=True)
                continue
            table = predict_utterances(run, chosen, progress=self.progress,
                                       report=lambda message: self.log(f"  {name}: {message}"))
            write_predictions(path, table)
            self.log(f"  {name}: {len(table)} {split} predictions")

    def _member_tables(self, split: str) -> dict:
        from abhinaya.predictions import read_predictions

        tables = {}
        for name in self.recipe.members:
            path = self.path(f"{PREDICTIONS_DIR}/{name}.{split}.csv")
            if path.is_file():
                tables[name] = read_predictions(path)
        return tables

    def _ensemble(self) -> None:
        from abhinaya.evaluation.combiners import choose_ensemble
        from abhinaya.predictions import write_predictions

        spec = self.recipe.ensemble
        utterances = self._utterances()
        references = {u.id: u.label for u in utterances if split_of(u) == "dev" and u.label is not None}
        groups = {u.id: u.speaker for u in utterances if split_of(u) == "dev"}
        dev = common_rows(self._member_tables("dev"), self.log, "dev")
        choice = choose_ensemble(
            dev, references, groups, methods=tuple(spec.methods), tiebreak=spec.tiebreak, metric=spec.metric,
            n_folds=spec.folds,
        )
        method = choice.method if spec.choose == "dev" else spec.choose
        reason = choice.reason if spec.choose == "dev" else f"{method}: fixed by the recipe (ensemble.choose)"
        test = self._member_tables("test")
        for name in spec.methods:
            write_predictions(self.path(f"{PREDICTIONS_DIR}/{name}.dev.csv"), choice.dev_tables[name])
            if test:
                table = apply_ensemble(choice.fitted[name], test, self.log if name == method else quiet, "test")
                write_predictions(self.path(f"{PREDICTIONS_DIR}/{name}.test.csv"), table)
        write_predictions(self.path(f"{PREDICTIONS_DIR}/{SYSTEM_TABLE}.dev.csv"), choice.dev_tables[method])
        if test:
            write_predictions(self.path(f"{PREDICTIONS_DIR}/{SYSTEM_TABLE}.test.csv"),
                              apply_ensemble(choice.fitted[method], test, quiet, "test"))
        record = choice.to_dict()
        record.update({"chosen": method, "reason": reason, "system": choice.fitted[method].to_dict(),
                       "members": list(dev)})
        path = self.path(ENSEMBLE_FILE)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        self.log(f"ensemble: {reason}")

    def _report(self) -> None:
        from abhinaya.evaluation.report import write_system_report
        from abhinaya.predictions import read_predictions, write_predictions

        record = json.loads(self.path(ENSEMBLE_FILE).read_text(encoding="utf-8"))
        utterances = self._utterances()
        references = {u.id: u.label for u in utterances if split_of(u) and u.label is not None}
        splits = {s: [u.id for u in utterances if split_of(u) == s and u.label is not None] for s in EVAL_SPLITS}
        splits = {s: ids for s, ids in splits.items() if ids}
        members = {name: self._member_tables_for(name) for name in record["members"]}
        ensembles = {}
        for method in self.recipe.ensemble.methods:
            ensembles[method] = {s: read_predictions(self.path(f"{PREDICTIONS_DIR}/{method}.{s}.csv"))
                                 for s in EVAL_SPLITS if self.path(f"{PREDICTIONS_DIR}/{method}.{s}.csv").is_file()}
        book = StageBook.open(self.run_dir)
        notes = [
            "Dev figures of the ensembles are cross-fitted: no dev utterance is scored by a combiner fitted on it.",
            "Test speakers took part in no choice: neither in training, nor in the ensemble's fitting or choice.",
        ]
        if self.recipe.submission:
            submission_table = self.path(f"{PREDICTIONS_DIR}/{SYSTEM_TABLE}.test.csv")
            if not submission_table.is_file():
                raise SystemRunError("submission: msp needs test utterances to predict, and the test split is empty")
            write_predictions(self.path(SUBMISSION_FILE), read_predictions(submission_table), format="msp")
            notes.append(f"Challenge submission file: {SUBMISSION_FILE}.")
        result = write_system_report(
            self.run_dir, title=self.recipe.name, references=references,
            splits={s: ids for s, ids in splits.items() if all(s in t for t in members.values())},
            members={n: {s: t for s, t in tables.items() if s in splits} for n, tables in members.items()},
            ensembles={n: {s: t for s, t in tables.items() if s in splits} for n, tables in ensembles.items()},
            chosen=record["chosen"], reason=record["reason"], notes=notes,
            stage_times={name: r.seconds for name, r in book.records.items()},
        )
        self.log(f"report: {result.html}")

    def _member_tables_for(self, name: str) -> dict:
        from abhinaya.predictions import read_predictions

        return {s: read_predictions(self.path(f"{PREDICTIONS_DIR}/{name}.{s}.csv"))
                for s in EVAL_SPLITS if self.path(f"{PREDICTIONS_DIR}/{name}.{s}.csv").is_file()}

    # ------------------------------------------------------------------ bookkeeping
    def write_members_file(self) -> None:
        from abhinaya.runs import CONFIG_FILE

        entries = {}
        for name, spec in self.recipe.members.items():
            run_dir = self.member_run_dir(name)
            kind = member_kind(str(run_dir / CONFIG_FILE) if spec.run else spec.recipe).name
            location = str(run_dir) if spec.run is not None else str(run_dir.relative_to(self.run_dir))
            entries[name] = {"run": location, "member": kind, "joined": spec.run is not None}
        path = self.path(MEMBERS_FILE)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)


def common_rows(tables: dict, log, split: str) -> dict:
    """The members' tables restricted to the ids every member predicted (the rest reported)."""
    if not tables:
        raise SystemRunError(f"no member predicted the {split} split")
    shared = set.intersection(*(set(t.ids) for t in tables.values()))
    for name, table in tables.items():
        missing = len(table) - len(shared)
        if missing:
            log(f"warning: {missing} {split} utterance(s) predicted by {name} are missing from another member; "
                "the ensemble leaves them out of fitting")
    order = [i for i in next(iter(tables.values())).ids if i in shared]
    return {name: table.reorder(order) for name, table in tables.items()}


def apply_ensemble(ensemble, tables: dict, log, what: str):
    """``ensemble`` (a ``FittedEnsemble``) applied to the members' ``tables``. An utterance that some member could
    not predict (a text member given an empty transcript: silence, music) is not lost: it gets the majority vote of
    the members that did predict it (ties to the tie-break member when it is one of them), and the log says how many
    and which members were missing. Rows follow the first member's order, then any id only later members have."""
    from abhinaya.evaluation.ensemble import majority_vote
    from abhinaya.labels import LabelSet
    from abhinaya.predictions import PredictionTable

    tables = {name: tables[name] for name in ensemble.members}
    order: dict[str, None] = {}
    for table in tables.values():
        order.update(dict.fromkeys(table.ids))
    id_sets = {name: set(t.ids) for name, t in tables.items()}
    shared = set.intersection(*id_sets.values())
    combined = ensemble.apply({name: t.reorder([i for i in t.ids if i in shared]) for name, t in tables.items()})
    rest = [i for i in order if i not in shared]
    if not rest:
        return combined
    label_set = LabelSet(ensemble.label_set)
    by_members: dict[tuple[str, ...], list[str]] = {}
    for utt_id in rest:
        present = tuple(name for name in tables if utt_id in id_sets[name])
        by_members.setdefault(present, []).append(utt_id)
    rows: dict[str, tuple[str, object]] = {}
    for present, ids in by_members.items():
        missing = [name for name in tables if name not in present]
        log(f"note: {len(ids)} {what} utterance(s) have no prediction from {', '.join(missing)}; the majority vote "
            f"of {', '.join(present)} predicts them")
        members = [tables[name].reorder(ids) for name in present]
        tiebreak = present.index(ensemble.tiebreak) if ensemble.tiebreak in present else None
        vote = majority_vote(members, tiebreak=tiebreak)
        index = vote.label_set.index
        for row, utt_id in enumerate(ids):
            probs = [vote.probs[row, index[c]] if c in index else 0.0 for c in label_set]
            rows[utt_id] = (vote.labels[row], probs)
    probs = {i: combined.probs[k] for k, i in enumerate(combined.ids)} if combined.probs is not None else None
    labels = dict(zip(combined.ids, combined.labels))
    ids = list(order)
    out_labels = [labels[i] if i in labels else rows[i][0] for i in ids]
    out_probs = None
    if probs is not None:
        out_probs = np.array([probs[i] if i in probs else rows[i][1] for i in ids], dtype=np.float64)
    return PredictionTable(ids, out_labels, out_probs, label_set if out_probs is not None else None,
                           combined.source)


def quiet(_message: str) -> None:
    pass


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def run_system(
    recipe_path: str | Path,
    run_dir: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    dry_run: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> SystemRun:
    """Carry out a system recipe in ``run_dir`` (see the module docstring); ``dry_run`` lists the stages and what
    each would reuse, and runs nothing."""
    recipe = load_system_recipe(recipe_path, overrides)
    run_dir = Path(run_dir).resolve()
    log = RunLog(run_dir / LOG_FILE, echo) if not dry_run else echo
    plan = SystemPlan(recipe, run_dir, progress=progress, log=log)
    book = StageBook.open(run_dir)
    result = SystemRun(run_dir)
    todo = [stage for stage in plan.stages if not book.is_fresh(stage.name, stage.key)]
    if dry_run:
        for stage in plan.stages:
            fresh = stage not in todo
            status = "would reuse" if fresh else ("would resume" if plan.can_resume(stage) else "would run")
            result.statuses[stage.name] = status
            known = book.seconds(stage.name)
            took = f" (last time {_minutes(known)})" if known is not None else ""
            echo(f"{status:12s} {stage.name:16s} {stage.what}{took}")
        return result
    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(run_dir / SYSTEM_FILE, recipe)
    plan.write_members_file()
    started = time.perf_counter()
    log(f"== abhinaya run {recipe_path} -> {run_dir}: {len(plan.stages)} stages, {len(todo)} to run")
    for position, stage in enumerate(plan.stages, start=1):
        if stage not in todo:
            result.statuses[stage.name] = "reused"
            log(f"[{position}/{len(plan.stages)}] {stage.name}: reused")
            continue
        remaining = [book.seconds(s.name) for s in todo[todo.index(stage):]]
        known = [s for s in remaining if s is not None]
        eta = f"; about {_minutes(sum(known))} left by the last run's times" if known and len(known) == len(remaining) else ""
        elapsed = time.perf_counter() - started
        log(f"[{position}/{len(plan.stages)}] {stage.name}: {stage.what} (elapsed {_minutes(elapsed)}{eta})")
        begin = time.perf_counter()
        stage.action()
        seconds = time.perf_counter() - begin
        book.record(stage.name, stage.key, stage.outputs, seconds)
        result.statuses[stage.name] = "ran"
        result.seconds[stage.name] = seconds
        log(f"[{position}/{len(plan.stages)}] {stage.name}: done in {_minutes(seconds)}")
    record = json.loads((run_dir / ENSEMBLE_FILE).read_text(encoding="utf-8"))
    result.chosen = record["chosen"]
    log(f"== done in {_minutes(time.perf_counter() - started)}; the system's ensemble: {record['reason']}")
    log(f"   report: {run_dir / REPORT_FILE}")
    log(f"   predict with it: abhinaya predict {run_dir} AUDIO_OR_MANIFEST... -o predictions.csv")
    return result


__all__ = ["SystemPlan", "SystemRun", "SystemRunError", "load_system_recipe", "run_system", "split_of"]
