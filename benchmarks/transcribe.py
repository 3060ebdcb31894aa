"""Transcription backends compared on one corpus in the same run: word error
rate against the sentences the corpus is known to contain, utterances per
second and real-time factor (processing seconds per second of audio).

    python benchmarks/transcribe.py --corpus ravdess --data ../shared/data/ravdess --limit 60 \\
        --backends transformers,ctranslate2
    python benchmarks/transcribe.py --corpus emodb --data ../shared/data/emodb --limit 40 \\
        --backends transformers,ctranslate2 --languages de,detect

A backend is ``transformers`` or ``ctranslate2[:COMPUTE_TYPE]`` (e.g.
``ctranslate2:float32``). The references come from the file names: RAVDESS
statement ``SS`` (field 5 of ``03-01-EE-II-SS-RR-AA``), EmoDB text code
(characters 3-5 of the stem, ``03a01Fa`` -> ``a01``). The subset is every k-th
file of the sorted corpus, so it is the same from run to run. Model loading is
timed separately and left out of the speed figures.

The EmoDB copy under ../shared/data is cut to 2.0 s per file (see its
README): most recordings stop mid-sentence, so the full sentence overstates
the errors. For EmoDB the table adds a "prefix WER": each transcript is scored
against the beginning of its sentence that it matches best (the longest such
beginning on ties), which forgives the missing end but nothing else.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

RAVDESS_STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}


def reference_text(corpus: str, utt_id: str) -> str:
    """The sentence spoken in file ``utt_id`` (its stem), from the file name alone."""
    if corpus == "ravdess":
        return RAVDESS_STATEMENTS[utt_id.split("-")[4]]
    from abhinaya.corpora.emodb import EMODB_TEXTS

    return EMODB_TEXTS[utt_id[2:5]]


def select(utterances, limit: int):
    """Every k-th utterance of the id-sorted list, ``limit`` of them at most."""
    ordered = sorted(utterances, key=lambda u: u.id)
    step = max(1, len(ordered) // limit)
    return ordered[::step][:limit]


def prefix_errors(reference: str, hypothesis: str | None) -> tuple[int, int]:
    """(word edits, reference words) against the prefix of ``reference`` closest to ``hypothesis``;
    the prefix holds at least the first word (every file starts with speech)."""
    from abhinaya.asr.transcribe import normalize_text

    ref = normalize_text(reference).split()
    hyp = normalize_text(hypothesis or "").split()
    row = list(range(len(hyp) + 1))  # edits between ref[:i] and hyp[:j], for the current i
    best = (len(hyp) + len(ref) + 1, 0)
    for i, ref_word in enumerate(ref, start=1):
        previous, row = row, [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, start=1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word))
        if row[-1] <= best[0]:
            best = (row[-1], i)
    return best


def parse_backend(spec: str) -> tuple[str, str | None]:
    name, _, compute_type = spec.partition(":")
    return name, compute_type or None


def run_one(utterances, references, backend: str, compute_type: str | None, language: str | None, args) -> dict:
    from abhinaya.asr.transcribe import (
        TranscriptionConfig,
        load_transcriber,
        transcribe_utterances,
        word_error_rate,
    )

    options = dict(model=args.model, backend=backend, language=language, batch_size=args.batch_size, device="cpu")
    if compute_type:
        options["compute_type"] = compute_type
    config = TranscriptionConfig(**options)
    started = time.perf_counter()
    engine = load_transcriber(config)
    load_seconds = time.perf_counter() - started
    failures: list[str] = []
    blank = [replace(utt, text=None) for utt in utterances]
    started = time.perf_counter()
    texts = transcribe_utterances(blank, config, progress=False, report=failures.append, transcriber=engine)
    seconds = time.perf_counter() - started
    hypotheses = [texts[utt.id] for utt in utterances]
    audio_seconds = sum(utt.duration or 0.0 for utt in utterances)
    label = backend + (f":{config.compute_type}" if backend == "ctranslate2" else "")
    prefix = [prefix_errors(r, h) for r, h in zip(references, hypotheses)]
    return {
        "backend": label,
        "language": language or "detect",
        "n": len(utterances),
        "audio_s": audio_seconds,
        "load_s": load_seconds,
        "seconds": seconds,
        "utt_per_s": len(utterances) / seconds,
        "rtf": seconds / audio_seconds if audio_seconds else float("nan"),
        "wer": word_error_rate(references, hypotheses),
        "wer_raw": word_error_rate(references, hypotheses, normalize=False),
        "wer_prefix": sum(e for e, _ in prefix) / max(1, sum(w for _, w in prefix)),
        "failed": len(failures),
        "pairs": list(zip([u.id for u in utterances], references, hypotheses)),
    }


def print_table(rows: list[dict], prefix: bool) -> None:
    extra = " prefix WER |" if prefix else ""
    print("| backend | language | utterances | audio (s) | load (s) | transcribe (s) | utt/s | RTF | speed vs first "
          f"| WER (normalised) | WER (raw text) |{extra} failed |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if prefix else ""))
    base = rows[0]["seconds"]
    for row in rows:
        extra = f" {100 * row['wer_prefix']:.1f}% |" if prefix else ""
        print(
            f"| {row['backend']} | {row['language']} | {row['n']} | {row['audio_s']:.1f} | {row['load_s']:.1f} "
            f"| {row['seconds']:.1f} | {row['utt_per_s']:.2f} | {row['rtf']:.3f} | {base / row['seconds']:.2f}x "
            f"| {100 * row['wer']:.1f}% | {100 * row['wer_raw']:.1f}% |{extra} {row['failed']} |"
        )


def print_errors(rows: list[dict], count: int) -> None:
    from abhinaya.asr.transcribe import word_error_rate

    for row in rows:
        wrong = [(i, r, h) for i, r, h in row["pairs"] if h is None or word_error_rate(r, h) > 0]
        print(f"\n{row['backend']} ({row['language']}): {len(wrong)} of {row['n']} transcripts differ from the "
              f"reference after normalisation" + (f"; first {min(count, len(wrong))}:" if wrong else ""))
        for utt_id, reference, hypothesis in wrong[:count]:
            print(f"  {utt_id}: ref {reference!r}\n  {' ' * len(utt_id)}  hyp {hypothesis!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=["ravdess", "emodb"], required=True)
    parser.add_argument("--data", required=True, help="corpus folder (e.g. ../shared/data/ravdess)")
    parser.add_argument("--limit", type=int, default=60, help="utterances (every k-th file of the corpus)")
    parser.add_argument("--backends", default="transformers,ctranslate2",
                        help="comma-separated: transformers, ctranslate2, ctranslate2:float32 ...")
    parser.add_argument("--languages", default="detect", help="comma-separated codes (en, de) or 'detect'")
    parser.add_argument("--model", default="whisper-base")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--show-errors", type=int, default=5, help="wrong transcripts to print per backend")
    args = parser.parse_args(argv)

    from abhinaya.corpora import prepare_corpus

    with tempfile.TemporaryDirectory() as tmp:
        result = prepare_corpus(args.corpus, args.data, Path(tmp) / "manifest.jsonl", check="header")
    utterances = select(result.utterances, args.limit)
    references = [reference_text(args.corpus, utt.id) for utt in utterances]
    languages = [None if code in ("detect", "auto", "none") else code for code in args.languages.split(",")]
    print(f"{args.corpus}: {len(utterances)} of {len(result.utterances)} utterances, "
          f"{sum(u.duration or 0 for u in utterances):.1f} s of audio; model {args.model}; batch {args.batch_size}; "
          f"{len(os.sched_getaffinity(0))} CPU core(s), load average {os.getloadavg()[0]:.1f} at start",
          file=sys.stderr)
    rows = []
    for language in languages:
        for spec in args.backends.split(","):
            backend, compute_type = parse_backend(spec.strip())
            print(f"running {spec} (language {language or 'detect'}) ...", file=sys.stderr, flush=True)
            rows.append(run_one(utterances, references, backend, compute_type, language, args))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}", file=sys.stderr)
    print_table(rows, prefix=args.corpus == "emodb")
    if args.show_errors:
        print_errors(rows, args.show_errors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
