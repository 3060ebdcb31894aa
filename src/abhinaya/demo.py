"""``abhinaya demo``: ``abhinaya run`` of the RAVDESS system recipe on a generated miniature corpus.

Without ``--data`` it writes a miniature RAVDESS (10 actors, synthetic tones with emotion-like cues) and runs the
shipped system recipe (``recipes/ravdess/abhinaya.yaml``) on it, its members shrunk to the demo's scale
(``abhinaya.testing.demo_recipes``): prepare, transcribe, S1, S2, ST1, T1, T2 and the eGeMAPS member, their
predictions of dev and test, the ensembles fitted on dev, the report. With ``--data DIR --corpus NAME`` the same
system runs on a real corpus folder.

The pretrained models are the offline ones (``abhinaya models prepare``): Whisper-base and SmolLM2-135M-Instruct.
Where their weight packages are not installed, tiny random-weight models of the same architectures stand in, so
that every stage still runs (the log says so; their figures then mean nothing). ``llm=False`` keeps only the
members without a language model (S1 and eGeMAPS).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from abhinaya.corpora import prepare_corpus, summarize
from abhinaya.corpora.splits import (
    apply_speaker_split,
    check_speaker_independence,
    holdout_speakers,
    sorted_speakers,
)
from abhinaya.manifest import Utterance, read_manifest, write_manifest
from abhinaya.recipes import write_yaml
from abhinaya.testing import dummies
from abhinaya.testing.demo_recipes import (
    ACOUSTIC_MEMBERS,
    DEMO_OVERRIDES,
    DEMO_S1_EPOCHS,
    demo_system,
    prompt_texts,
)
from abhinaya.testing.tiny import write_tiny_llama_for_texts, write_tiny_whisper_asr

DEMO_CORPORA = ("ravdess", "emodb", "csv")
# Language forced when transcribing a corpus (others: Whisper detects it).
TRANSCRIPTION_LANGUAGES = {"ravdess": "en"}


@dataclass
class DemoResult:
    """``run_dir``: the system run folder (kept when ``--workdir`` or ``--keep`` is given); ``metrics``: split ->
    member or method -> classification report; ``chosen``: the ensemble method the system chose on dev."""

    workdir: Path
    run_dir: Path
    metrics: dict
    chosen: str


def _speaker_split(utterances: list[Utterance], log) -> list[Utterance]:
    """Keep official dev/test splits; otherwise hold out about a fifth of the speakers for test and two (one for a
    corpus of fewer than 6 speakers) for dev, on which the ensemble is fitted."""
    if any(u.split == "dev" for u in utterances):
        return utterances
    speakers = sorted_speakers(utterances)
    if len(speakers) < 3:
        raise ValueError(f"a speaker-independent split needs at least 3 speakers, the corpus has {len(speakers)}")
    num_test = max(1, round(len(speakers) * 0.2))
    num_dev = 2 if len(speakers) >= 6 else 1
    dev, test = holdout_speakers(speakers, num_dev, num_test)
    log(f"speakers: train {len(speakers) - num_dev - num_test}, dev {dev}, test {test}")
    split = apply_speaker_split(utterances, dev=dev, test=test)
    check_speaker_independence(split)
    return split


def _offline_model(name: str) -> Path:
    """The folder of an offline model, prepared once into the model cache from its weight packages (ImportError /
    OSError / ValueError when they are absent)."""
    from abhinaya.weights.registry import prepare_offline_model

    return prepare_offline_model(name, progress=False)


def _announce(name: str, log) -> None:
    """Say that an offline model is written to the model cache, before the minute it takes (once per machine)."""
    from abhinaya.weights.cache import OFFLINE_MODEL_NAMES, is_complete, model_cache_dir

    folder = model_cache_dir() / name
    if not (folder.is_dir() and is_complete(folder)):
        log(f"{name}: assembling it into the model cache {model_cache_dir()} (once; {OFFLINE_MODEL_NAMES[name]})")


def _whisper(workdir: Path, log) -> tuple[str, bool]:
    """``(folder, real)``: Whisper-base, or without its weight packages a tiny random-weight Whisper (the log says
    so; what it then transcribes and encodes means nothing)."""
    _announce("whisper-base", log)
    try:
        return str(_offline_model("whisper-base")), True
    except (ImportError, ValueError, OSError) as err:
        log(f"note: Whisper-base is not available ({str(err).splitlines()[0]}); a tiny random-weight Whisper stands in")
        folder = workdir / "tiny-whisper"
        if not (folder / "preprocessor_config.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            write_tiny_whisper_asr(folder)
        return str(folder), False


def _llm(workdir: Path, utterances: list[Utterance], log) -> tuple[str, bool]:
    """``(folder, real)``: SmolLM2-135M-Instruct, or without its package a tiny random-weight Llama whose vocabulary
    is the words of the corpus's texts and of the members' prompts."""
    _announce("smollm2", log)
    try:
        return str(_offline_model("smollm2")), True
    except (ImportError, ValueError, OSError) as err:
        log(f"note: SmolLM2 is not available ({str(err).splitlines()[0]}); a tiny random-weight Llama stands in")
        folder = workdir / "tiny-llama"
        if not (folder / "config.json").is_file():
            labels = sorted({u.label for u in utterances if u.label})
            write_tiny_llama_for_texts(folder, [u.text for u in utterances if u.text] + prompt_texts() + labels)
        return str(folder), False


def _layers(folder: str, key: str) -> int:
    from abhinaya.weights.cache import resolve_model_path

    return json.loads((resolve_model_path(folder) / "config.json").read_text(encoding="utf-8"))[key]


def _metrics_table(metrics: dict, split: str, chosen: str) -> str:
    from abhinaya.evaluation.metrics import format_metrics_table

    reports = {(f"{name} (chosen)" if name == chosen else name): report for name, report in metrics[split].items()}
    return format_metrics_table(reports)


def run_demo(
    data: str | Path | None = None,
    corpus: str = "ravdess",
    workdir: str | Path | None = None,
    keep: bool = False,
    log=print,
    progress: bool = True,
    s1_epochs: int = DEMO_S1_EPOCHS,
    llm: bool = True,
) -> DemoResult:
    """Run the demo system; the working folder is removed afterwards unless ``keep`` or ``workdir`` is given."""
    from abhinaya.system.runner import ENSEMBLE_FILE, METRICS_FILE, run_system

    if corpus not in DEMO_CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; choose one of {', '.join(DEMO_CORPORA)}")
    own_tmp = workdir is None
    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="abhinaya-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        if data is None:
            log(f"== writing a miniature RAVDESS (10 actors, synthetic tones) to {root / 'corpora'}")
            source, synthetic = dummies.make_dummy_ravdess(root / "corpora" / "ravdess", actors=tuple(range(1, 11))), True
        else:
            source, synthetic = Path(data), False
            if not source.exists():
                raise FileNotFoundError(f"{source}: corpus folder not found")
        log(f"== preparing {corpus} from {source}")
        prepared = prepare_corpus(corpus, source, root / "manifest.jsonl")
        for problem in prepared.problems:
            log(f"problem: {problem}")
        log(summarize(prepared))
        utterances = _speaker_split(read_manifest(root / "manifest.jsonl"), log)
        manifest = write_manifest(root / "manifest.split.jsonl", utterances)

        members = [m for m in DEMO_OVERRIDES if (llm or m in ACOUSTIC_MEMBERS) and (m != "s1" or s1_epochs > 0)]
        whisper, real_whisper = _whisper(root, log)
        models = {"encoder": whisper, "whisper_layers": _layers(whisper, "encoder_layers"),
                  "s1_epochs": s1_epochs, "feature_cache": str(root / "features")}
        if llm:
            model, _ = _llm(root, utterances, log)
            models.update(llm=model, llm_layers=_layers(model, "num_hidden_layers"))
        # The corpus's own sentences (RAVDESS names them) are kept: Whisper transcribes only utterances without text.
        transcriber = {"model": "whisper-base", "language": TRANSCRIPTION_LANGUAGES.get(corpus), "overwrite": False}
        if not real_whisper:
            transcriber.update(model=whisper, backend="transformers", max_new_tokens=16)
        system = demo_system(manifest=manifest, corpus=corpus if corpus != "csv" else None, members=members,
                             transcriber=transcriber, **models)
        recipe = write_yaml(root / "demo-system.yaml", system)
        log(f"== abhinaya run {recipe} -o {root / 'run'}  (members: {', '.join(members)})")
        run_system(recipe, root / "run", progress=progress, echo=log)

        metrics = json.loads((root / "run" / METRICS_FILE).read_text(encoding="utf-8"))
        chosen = json.loads((root / "run" / ENSEMBLE_FILE).read_text(encoding="utf-8"))["chosen"]
        split = "test" if "test" in metrics else "dev"
        log(f"\n== results on the {split} speakers (macro-F1 is the headline metric)")
        log(_metrics_table(metrics, split, chosen))
        if synthetic:
            log("(a miniature synthetic corpus: these figures show that every stage works, not how well real emotion "
                "is recognised; see BENCHMARKS.md for real corpora)")
        if keep or not own_tmp:
            log(f"\nthe system is kept in {root / 'run'}; use it with\n"
                f"  abhinaya predict {root / 'run'} AUDIO_OR_MANIFEST... -o predictions.csv --members members/")
        else:
            log("\nthe working folder is removed now; keep the trained system with --workdir DIR, then\n"
                "  abhinaya predict DIR/run AUDIO_OR_MANIFEST... -o predictions.csv --members members/")
        return DemoResult(root, root / "run", metrics, chosen)
    finally:
        if own_tmp and not keep:
            shutil.rmtree(root, ignore_errors=True)
