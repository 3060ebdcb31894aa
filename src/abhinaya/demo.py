"""``abhinaya demo``: the whole pipeline, end to end, on a miniature corpus.

Without ``--data`` it writes miniature MSP-Podcast, RAVDESS, EmoDB and MELD
corpora (``corpora.dummies``) into a temporary folder and runs every stage on
them: preparing manifests, a speaker-independent split, the members, voting,
the challenge submission file and evaluation. With ``--data DIR --corpus
NAME`` the same stages run on a real corpus.

Each stage is a function, so adding a member means adding one stage.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .baselines import ACOUSTIC_CLASSIFIERS, AcousticBaseline, FeatureCache, TextBaseline
from .corpora import prepare_corpus, summarize
from .corpora import dummies
from .ensemble import combine
from .evaluation import evaluate_predictions
from .labels import CORPUS_LABEL_SETS, LabelSet
from .manifest import Utterance, read_manifest, split_utterances, write_manifest
from .metrics import format_metrics_table
from .plots import plot_confusion_matrix
from .predictions import write_predictions
from .splits import apply_speaker_split, check_speaker_independence, holdout_speakers, sorted_speakers

SPEECH_CORPORA = ("ravdess", "emodb", "msp-podcast", "csv")
TEXT_CORPORA = ("meld",)
DEMO_CORPORA = SPEECH_CORPORA + TEXT_CORPORA
# Corpora on which the demo fine-tunes S1 (the miniature MSP-Podcast and EmoDB sets are too small to mean much).
S1_CORPORA = ("ravdess", "csv")
DEMO_S1_EPOCHS = 4


@dataclass
class DemoResult:
    workdir: Path
    reports: dict[str, dict] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    models: dict[str, object] = field(default_factory=dict)


def _stage(log: Callable[[str], None], title: str):
    log(f"\n== {title}")
    return time.perf_counter()


def _speaker_independent(utterances: list[Utterance], log) -> list[Utterance]:
    """Keep official dev/test splits; otherwise hold out about a fifth of the
    speakers for test and one speaker for dev."""
    if any(u.split in ("dev", "test") for u in utterances):
        return utterances
    speakers = sorted_speakers(utterances)
    if len(speakers) < 3:
        raise ValueError(f"a speaker-independent split needs at least 3 speakers, the corpus has {len(speakers)}")
    num_test = max(1, round(len(speakers) * 0.2))
    dev, test = holdout_speakers(speakers, 1, num_test)
    log(f"speakers: train {len(speakers) - 1 - num_test}, dev {dev}, test {test}")
    split = apply_speaker_split(utterances, dev=dev, test=test)
    check_speaker_independence(split)
    return split


def _speech_members(
    utterances, label_set: LabelSet, outdir: Path, eval_split: str, log, progress: bool, s1_table=None
) -> DemoResult:
    result = DemoResult(outdir)
    train = [u for u in split_utterances(utterances, "train") if u.label is not None]
    evaluate_on = split_utterances(utterances, eval_split)
    log(f"train {len(train)} utterances, evaluate on {eval_split} ({len(evaluate_on)})")
    cache = FeatureCache(progress=progress)
    tables = []
    for classifier in ACOUSTIC_CLASSIFIERS:
        name = f"mel-{classifier}"
        model = AcousticBaseline(label_set, classifier, features=cache).fit(train)
        result.models[name] = model
        table = model.predict(evaluate_on, name=name)
        path = write_predictions(outdir / f"{name}.csv", table)
        table.source = str(path)
        tables.append(table)
        result.files[name] = path
        result.reports[name] = evaluate_predictions(table, utterances)
    for problem in cache.errors:
        log(f"skipped: {problem}")
    tiebreak = 0
    if s1_table is not None:
        # S1 votes with the baselines and, as the strongest member, wins ties.
        tables.insert(0, s1_table)
        result.files["s1"] = Path(s1_table.source)
        result.reports["s1"] = evaluate_predictions(s1_table, utterances)
    vote = combine(tables, "majority", tiebreak=tiebreak)
    result.files["vote"] = write_predictions(outdir / "vote.csv", vote)
    result.reports["vote (majority)"] = evaluate_predictions(vote, utterances)
    soft = combine(tables, "soft")
    result.files["soft"] = write_predictions(outdir / "soft-vote.csv", soft)
    result.reports["vote (soft)"] = evaluate_predictions(soft, utterances)
    report = result.reports["vote (majority)"]
    result.files["confusion"] = plot_confusion_matrix(
        report["confusion_matrix"], report["labels"], outdir / "vote-confusion.png", title="majority vote"
    )
    return result


def _s1_encoder(workdir: Path, log) -> str:
    """Whisper-base from the offline weight packages (prepared once into the
    model cache); without them, a tiny random-weight Whisper so that the
    pipeline still runs (its scores then mean nothing, and the log says so)."""
    try:
        from .models.registry import prepare_offline_model

        return str(prepare_offline_model("whisper-base", progress=False))
    except (ImportError, ValueError, OSError) as err:
        log(f"note: Whisper-base is not available ({str(err).splitlines()[0]}); S1 uses a tiny random-weight Whisper")
        from transformers import WhisperConfig, WhisperModel

        folder = workdir / "tiny-whisper"
        if not folder.is_dir():
            tiny = WhisperConfig(
                d_model=64, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128, decoder_layers=1,
                decoder_attention_heads=2, decoder_ffn_dim=128, vocab_size=64, max_target_positions=32,
                pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
            )
            WhisperModel(tiny).save_pretrained(folder)
        return str(folder)


def _s1_member(split_manifest: Path, corpus: str, outdir: Path, eval_split: str, epochs: int, log, progress: bool):
    """Fine-tune S1 briefly (a demo, not a recipe) and predict the evaluation split."""
    from .data import AudioConfig
    from .experiment import DataConfig
    from .inference import predict_utterances
    from .manifest import read_manifest
    from .members.s1 import S1Recipe
    from .models.ssl_classifier import SSLClassifierConfig
    from .runs import load_run
    from .training import train
    from .training_config import TrainConfig

    run_dir = outdir / "s1-run"
    recipe = S1Recipe(
        data=DataConfig(corpus=corpus if corpus in CORPUS_LABEL_SETS else None, manifest=str(split_manifest)),
        audio=AudioConfig(train_crop_seconds=2.0, gain_jitter_db=3.0),
        model=SSLClassifierConfig(encoder=_s1_encoder(outdir.parent, log), freeze_layers=2, head_hidden=128),
        train=TrainConfig(epochs=epochs, batch_size=8, head_lr=2e-3, encoder_lr=5e-5, progress=progress),
    )
    resume = (run_dir / "config.yaml").is_file()
    train(recipe, run_dir, resume=resume, log=lambda message: log(f"  s1: {message}"))
    run = load_run(run_dir)
    evaluate_on = [u for u in read_manifest(split_manifest) if u.split == eval_split]
    table = predict_utterances(run, evaluate_on, progress=progress, report=log)
    table.source = str(write_predictions(outdir / "s1.csv", table))
    return table


def _text_members(utterances, label_set: LabelSet, outdir: Path, eval_split: str, log) -> DemoResult:
    result = DemoResult(outdir)
    train = [u for u in split_utterances(utterances, "train") if u.label is not None and u.text]
    evaluate_on = [u for u in split_utterances(utterances, eval_split) if u.text]
    log(f"train {len(train)} transcripts, evaluate on {eval_split} ({len(evaluate_on)})")
    table = TextBaseline(label_set).fit(train).predict(evaluate_on)
    result.files["tfidf-logreg"] = write_predictions(outdir / "tfidf-logreg.csv", table)
    result.reports["tfidf-logreg"] = evaluate_predictions(table, utterances)
    return result


def _label_set(corpus: str, utterances: list[Utterance]) -> LabelSet:
    order = list(CORPUS_LABEL_SETS[corpus]) if corpus in CORPUS_LABEL_SETS else None
    return LabelSet.from_labels([u.label for u in utterances], order=order)


def run_corpus(
    corpus: str, src: Path, workdir: Path, log=print, progress: bool = True, s1_epochs: int = 0
) -> DemoResult:
    """Prepare ``src`` as ``corpus`` and run every stage on it."""
    if corpus not in DEMO_CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; choose one of {', '.join(DEMO_CORPORA)}")
    outdir = workdir / corpus
    outdir.mkdir(parents=True, exist_ok=True)
    start = _stage(log, f"{corpus}: prepare {src}")
    prepared = prepare_corpus(corpus, src, outdir / "manifest.jsonl")
    for problem in prepared.problems:
        log(f"problem: {problem}")
    log(summarize(prepared))
    utterances = read_manifest(outdir / "manifest.jsonl")
    label_set = _label_set(corpus, utterances)
    log(f"done in {time.perf_counter() - start:.1f} s")
    if corpus in TEXT_CORPORA:
        eval_split = "dev"
        start = _stage(log, f"{corpus}: text members")
        result = _text_members(utterances, label_set, outdir, eval_split, log)
    else:
        utterances = _speaker_independent(utterances, log)
        write_manifest(outdir / "manifest.split.jsonl", utterances)
        labelled_test = [u for u in split_utterances(utterances, "test") if u.label is not None]
        eval_split = "test" if labelled_test else "dev"
        s1_table = None
        if s1_epochs > 0 and corpus in S1_CORPORA:
            start = _stage(log, f"{corpus}: S1 (speech encoder, fine-tuned for {s1_epochs} epoch(s))")
            s1_table = _s1_member(outdir / "manifest.split.jsonl", corpus, outdir, eval_split, s1_epochs, log, progress)
            log(f"done in {time.perf_counter() - start:.1f} s")
        start = _stage(log, f"{corpus}: baselines and votes")
        result = _speech_members(utterances, label_set, outdir, eval_split, log, progress, s1_table)
        if corpus == "msp-podcast":
            submission = [u for u in utterances if u.split and u.split.startswith("test")]
            model = result.models["mel-logreg"]
            path = write_predictions(outdir / "submission.csv", model.predict(submission), format="msp")
            result.files["submission"] = path
            log(f"challenge submission file ({len(submission)} test utterances): {path}")
    log(f"done in {time.perf_counter() - start:.1f} s")
    return result


def run_demo(
    data: str | Path | None = None,
    corpus: str = "ravdess",
    workdir: str | Path | None = None,
    keep: bool = False,
    log=print,
    progress: bool = True,
    s1_epochs: int = DEMO_S1_EPOCHS,
) -> dict[str, DemoResult]:
    """Run the demo; returns the results per corpus. The working folder is
    removed afterwards unless ``keep`` or ``workdir`` is given."""
    own_tmp = workdir is None
    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="abhinaya-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, DemoResult] = {}
    try:
        if data is not None:
            data = Path(data)
            if not data.exists():
                raise FileNotFoundError(f"{data}: corpus folder not found")
            results[corpus] = run_corpus(corpus, data, root, log, progress, s1_epochs)
        else:
            start = _stage(log, f"writing miniature corpora to {root / 'corpora'}")
            sources = {
                "ravdess": dummies.make_dummy_ravdess(root / "corpora" / "ravdess", actors=tuple(range(1, 11))),
                "emodb": dummies.make_dummy_emodb(root / "corpora" / "emodb"),
                "msp-podcast": dummies.make_dummy_msp_podcast(root / "corpora" / "msp-podcast"),
                "meld": dummies.make_dummy_meld(root / "corpora" / "meld"),
            }
            log(f"done in {time.perf_counter() - start:.1f} s")
            for name, src in sources.items():
                results[name] = run_corpus(name, Path(src), root, log, progress, s1_epochs)
        reports = {f"{corpus_name}/{member}": report for corpus_name, res in results.items() for member, report in res.reports.items()}
        log("\n== results (speaker-independent; macro-F1 is the headline metric)")
        log(format_metrics_table(reports))
        if data is None:
            log("(miniature synthetic corpora: these figures show that every stage works, not how well real emotion is"
                " recognised; see BENCHMARKS.md for real corpora)")
        (root / "metrics.json").write_text(json.dumps(reports, indent=2) + "\n", encoding="utf-8")
        if keep or not own_tmp:
            log(f"\nall outputs kept in {root}")
        return results
    finally:
        if own_tmp and not keep:
            shutil.rmtree(root, ignore_errors=True)
