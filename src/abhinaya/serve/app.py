"""The HTTP service: a FastAPI application around a loaded run, and the uvicorn server that runs it.

Endpoints (the OpenAPI schema is at ``/openapi.json``, the interactive page at ``/docs``):

- ``POST /predict``: one audio file in the multipart field ``file``; optional field ``speaker``. Answers the class,
  the probabilities per class, the duration and ``segments``: null for audio up to the model's input (30 s), else
  the utterances a voice-activity detector found, each with its times, class and probabilities (up to
  ``--max-duration``; longer is refused, 413).
- ``POST /predict/group``: several files (each in a field ``file``) with an optional ``speaker``: when a speaker is
  named, the files are that one speaker's utterances and are normalised together (where the run normalises).
- ``GET /health``: status, run folder name, member(s), label set, limits and batching counters.
- ``GET /labels``: the label set, in the order of the probabilities.

Per-speaker normalisation happens only when a request names a speaker, and only among that request's own files: a
prediction never depends on another client's audio or on the timing of the batches. Errors are JSON
``{"error": "..."}``: 400 (not audio, empty, truncated, damaged), 413 (body or audio too large or too long),
415 (a format or content type this service does not decode), 422 (a missing or unknown field), 503 (queue full).
Nothing in a request names a file on the server: uploads are decoded from memory, and file names sent by the
client are used in messages only.
"""

from __future__ import annotations

import itertools
import socket
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from abhinaya.predict.inputs import reads_as_emotion

from abhinaya.serve.batching import Batcher, Busy, Stopped
from abhinaya.serve.multipart import FormError, Part, parse_form
from abhinaya.serve.predictor import ItemResult, ServedModel, ServeItem
from abhinaya.serve.settings import ServeSettings
from abhinaya.serve.upload import DECODED_FORMATS, Clip, UploadError, decode_upload

FILE_FIELD = "file"
SPEAKER_FIELD = "speaker"
MAX_SPEAKER_CHARS = 200


# ----------------------------------------------------------------------------- response schemas (OpenAPI)
class ErrorBody(BaseModel):
    error: str = Field(description="what is wrong with the request, in words")


class Prediction(BaseModel):
    label: str | None = Field(description="the predicted class")
    probabilities: dict[str, float] | None = Field(
        description="probability of each class (sums to 1); null for an ensemble that votes labels only")
    duration: float = Field(description="seconds of audio in the upload")
    segments: list[dict[str, Any]] | None = Field(
        None, description="audio longer than the model's input (30 s): each segment's start and end (seconds), "
                          "label and probabilities; the answer's label is then the class with the most speech time "
                          "and its probabilities the segments' mean weighted by duration. null: predicted whole")
    speaker_norm: bool = Field(False, description="whether per-speaker normalisation was applied")
    notes: list[str] = Field(default_factory=list, description="e.g. audio cut to the model's longest input")
    members: dict[str, dict[str, Any]] | None = Field(
        None, description="system runs: each member's label and probabilities")


class FilePrediction(Prediction):
    filename: str | None = Field(None, description="the client's name of the file (as sent; never opened)")


class GroupPrediction(BaseModel):
    speaker: str | None
    results: list[FilePrediction]


class Health(BaseModel):
    status: str
    run: str = Field(description="name of the run folder served")
    kind: str = Field(description="member or system")
    members: dict[str, str] = Field(description="member name -> member type")
    ensemble: str | None = Field(description="system runs: the ensemble the run chose")
    labels: list[str]
    speaker_norm: bool = Field(description="whether requests that name a speaker are normalised per speaker")
    limits: dict[str, Any]
    batching: dict[str, Any]


_ERRORS = {code: {"model": ErrorBody} for code in (400, 413, 415, 422, 503)}
_FORM_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": [FILE_FIELD],
            "properties": {
                FILE_FIELD: {"type": "string", "format": "binary",
                             "description": f"the audio ({DECODED_FORMATS}); decoded in memory"},
                SPEAKER_FIELD: {"type": "string", "maxLength": MAX_SPEAKER_CHARS,
                                "description": "optional speaker id: turns per-speaker normalisation on for the "
                                               "files of this request (where the run normalises)"},
            },
        }}},
    }
}
_GROUP_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": [FILE_FIELD],
            "properties": {
                FILE_FIELD: {"type": "array", "items": {"type": "string", "format": "binary"},
                             "description": "the audio files (repeat the field)"},
                SPEAKER_FIELD: {"type": "string", "maxLength": MAX_SPEAKER_CHARS,
                                "description": "optional: the one speaker of every file of this request"},
            },
        }}},
    }
}


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _answer(result: ItemResult, clip: Clip) -> dict[str, Any]:
    return {
        "label": result.label,
        "probabilities": result.probabilities,
        "duration": round(clip.duration, 4),
        "segments": None,
        "speaker_norm": result.speaker_norm,
        "notes": result.notes,
        "members": result.members,
    }


@dataclass
class LongClip:
    """An upload longer than the model's input, cut into ``pieces`` (``(start, end)`` seconds, one item each)."""

    clip: Clip
    pieces: list[tuple[float, float]]
    detector: str


def cut_upload(clip: Clip, max_seconds: float, vad: str) -> LongClip:
    """The utterances of a long upload, found by the voice-activity detector ``vad`` in the waveform in memory (at
    most ``max_seconds`` each, as ``abhinaya predict --segment auto`` cuts a long file)."""
    from abhinaya.predict.segments import VAD_RATE, SegmentConfig, find_segments_in_wave, make_detector

    config = SegmentConfig(vad=vad)
    config = replace(config, max_segment=min(config.max_segment, max_seconds))
    with _VAD_LOCK:  # Silero's model keeps its state between frames: one recording at a time
        found = find_segments_in_wave(clip.at_rate(VAD_RATE), "upload", config, make_detector(config))
    return LongClip(clip, [(seg.start, seg.end) for seg in found.segments], found.detector)


_VAD_LOCK = threading.Lock()


def _long_answer(long: LongClip, results: list[ItemResult]) -> dict[str, Any]:
    """The answer for a segmented upload: each segment's class and probabilities with its times; overall, the class
    with the most speech time and the probabilities averaged over the segments, weighted by their durations."""
    segments, time, weighted, total = [], {}, {}, 0.0
    notes = [f"{long.clip.duration:.1f} s cut into {len(long.pieces)} segment(s) by the {long.detector} "
             "voice-activity detector"]
    for (start, end), result in zip(long.pieces, results):
        segments.append({"start": round(start, 3), "end": round(end, 3), "label": result.label,
                         "probabilities": result.probabilities})
        if result.label is not None:
            time[result.label] = time.get(result.label, 0.0) + (end - start)
        if result.probabilities is not None:
            seconds = end - start
            total += seconds
            for label, p in result.probabilities.items():
                weighted[label] = weighted.get(label, 0.0) + seconds * p
        notes += [n for n in result.notes if n not in notes]
    if not long.pieces:
        notes.append("no speech found: nothing to predict")
    return {
        "label": max(time, key=time.get) if time else None,
        "probabilities": {k: v / total for k, v in weighted.items()} if weighted and total > 0 else None,
        "duration": round(long.clip.duration, 4),
        "segments": segments,
        "speaker_norm": any(r.speaker_norm for r in results),
        "notes": notes,
        "members": None,
    }


def create_app(service: ServedModel, settings: ServeSettings | None = None):
    """The FastAPI application serving ``service`` (a loaded member or system run)."""
    settings = settings or ServeSettings()
    batcher = Batcher(service.predict, max_batch=settings.max_batch, wait_ms=settings.batch_wait_ms,
                      queue_size=settings.queue_size)
    min_seconds = service.min_seconds
    max_input = service.max_input_seconds
    counter = itertools.count(1)

    @asynccontextmanager
    async def lifespan(_app):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="abhinaya",
        summary="Speech emotion recognition: POST an audio file, get its emotion class and probabilities.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.settings = settings
    app.state.batcher = batcher

    def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(_request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, exc: RequestValidationError):
        return error(422, "; ".join(str(e.get("msg", e)) for e in exc.errors()) or "invalid request")

    @app.exception_handler(RequestError)
    async def request_error(_request, exc: RequestError):
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        return error(exc.status, exc.message, headers)

    @app.exception_handler(Exception)
    async def internal_error(_request, exc: Exception):
        return error(500, f"internal error ({type(exc).__name__}); the service's log has the details")

    async def read_body(request: Request) -> bytes:
        limit = settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise RequestError(400, f"Content-Length {declared!r} is not a number") from None
            if size > limit:
                raise RequestError(413, f"the body is {size} bytes; this service takes at most {limit} "
                                        f"(--max-body-mb {settings.max_body_mb:g})")
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise RequestError(413, f"the body exceeds {limit} bytes (--max-body-mb {settings.max_body_mb:g})")
            chunks.append(chunk)
        return b"".join(chunks)

    async def read_form(request: Request, many: bool) -> tuple[list[Part], str | None]:
        body = await read_body(request)
        try:
            parts = parse_form(request.headers.get("content-type"), body,
                               max_parts=settings.max_files + 4 if many else 8)
        except FormError as err:
            raise RequestError(err.status, err.message) from None
        unknown = sorted({p.name for p in parts} - {FILE_FIELD, SPEAKER_FIELD})
        if unknown:
            raise RequestError(422, f"unknown form field(s) {', '.join(map(repr, unknown))}; the fields are "
                                    f"{FILE_FIELD!r} (the audio) and {SPEAKER_FIELD!r} (optional)")
        files = [p for p in parts if p.name == FILE_FIELD]
        if not files:
            raise RequestError(422, f"missing the field {FILE_FIELD!r}: send the audio as a multipart file "
                                    f"(curl -F {FILE_FIELD}=@speech.wav)")
        if not many and len(files) > 1:
            raise RequestError(422, f"{len(files)} files in one request; /predict takes one, /predict/group several")
        if len(files) > settings.max_files:
            raise RequestError(413, f"{len(files)} files in one request; at most {settings.max_files} (--max-files)")
        for part in files:
            if part.filename is None:
                raise RequestError(422, f"the field {FILE_FIELD!r} must be a file upload (a part with a filename), "
                                        "not a text value; the service never opens a file named in a request")
        speakers = [p for p in parts if p.name == SPEAKER_FIELD]
        if len(speakers) > 1:
            raise RequestError(422, f"the field {SPEAKER_FIELD!r} is given {len(speakers)} times; give it once")
        speaker = speakers[0].text.strip() if speakers else None
        if speaker is not None:
            if speakers[0].filename is not None:
                raise RequestError(422, f"the field {SPEAKER_FIELD!r} is a text value, not a file")
            if len(speaker) > MAX_SPEAKER_CHARS or not speaker.isprintable():
                raise RequestError(422, f"the speaker must be printable text of at most {MAX_SPEAKER_CHARS} "
                                        "characters")
            if reads_as_emotion(speaker):
                raise RequestError(422, f"the speaker {speaker!r} reads as an emotion label; normalising per such a "
                                        "group would remove the emotion itself: name the speaker, or leave it out")
            speaker = speaker or None
        return files, speaker

    async def decode(part: Part, position: int) -> Clip:
        name = part.filename or f"file {position}"
        try:
            return await run_in_threadpool(decode_upload, part.data, name, content_type=part.content_type,
                                           max_seconds=settings.max_duration, min_seconds=min_seconds)
        except UploadError as err:
            raise RequestError(err.status, err.message) from None

    async def run(files: list[Part], speaker: str | None) -> list[dict[str, Any]]:
        """The answer for each file: one item each, or one per segment of a file longer than the model's input."""
        clips = [await decode(part, k) for k, part in enumerate(files, start=1)]
        request_no = next(counter)
        group = f"request-{request_no}:{speaker}" if speaker is not None else None
        items: list[ServeItem] = []
        shapes: list[Clip | LongClip] = []
        for k, clip in enumerate(clips):
            if clip.duration <= max_input:
                shapes.append(clip)
                items.append(ServeItem(id=f"request-{request_no}-{k}", clip=clip, speaker=speaker, group=group))
                continue
            long = await run_in_threadpool(cut_upload, clip, max_input, settings.vad)
            shapes.append(long)
            for j, (start, end) in enumerate(long.pieces):
                piece = Clip(f"{clip.name} {start:.2f}-{end:.2f} s",
                             clip.wave[int(start * clip.sample_rate):int(end * clip.sample_rate)], clip.sample_rate)
                items.append(ServeItem(id=f"request-{request_no}-{k}-{j}", clip=piece, speaker=speaker, group=group))
        if not items:  # only recordings without speech
            return [_long_answer(shape, []) for shape in shapes]
        try:
            future = batcher.submit(items)
        except Busy as err:
            raise RequestError(503, f"the service is busy: {err}") from None
        except Stopped as err:
            raise RequestError(503, str(err)) from None
        try:
            results = await future
        except Stopped as err:
            raise RequestError(503, str(err)) from None
        failed = [r.error for r in results if r.error is not None]
        if failed:
            raise RequestError(400, "; ".join(failed))
        answers, position = [], 0
        for shape in shapes:
            if isinstance(shape, LongClip):
                answers.append(_long_answer(shape, results[position:position + len(shape.pieces)]))
                position += len(shape.pieces)
            else:
                answers.append(_answer(results[position], shape))
                position += 1
        return answers

    @app.post("/predict", response_model=Prediction, responses=_ERRORS, openapi_extra=_FORM_SCHEMA,
              summary="Predict the emotion of one audio file")
    async def predict(request: Request):
        files, speaker = await read_form(request, many=False)
        answers = await run(files, speaker)
        return JSONResponse(answers[0])

    @app.post("/predict/group", response_model=GroupPrediction, responses=_ERRORS, openapi_extra=_GROUP_SCHEMA,
              summary="Predict several files, optionally one speaker's (normalised together)")
    async def predict_group(request: Request):
        files, speaker = await read_form(request, many=True)
        answers = await run(files, speaker)
        return JSONResponse({"speaker": speaker,
                             "results": [{"filename": part.filename, **answer} for part, answer in zip(files, answers)]})

    @app.get("/health", response_model=Health, summary="Status, run, members, labels, limits, batching counters")
    async def health():
        return {
            "status": "ok",
            **service.describe(),
            "limits": {"max_body_mb": settings.max_body_mb, "max_duration": settings.max_duration,
                       "max_files": settings.max_files, "min_duration": min_seconds,
                       "segmented_above": max_input, "vad": settings.vad},
            "batching": {"max_batch": settings.max_batch, "batch_wait_ms": settings.batch_wait_ms,
                         "queue_size": settings.queue_size, "waiting": batcher.waiting, **batcher.stats.as_dict()},
        }

    @app.get("/labels", summary="The label set, in the order of the probabilities")
    async def labels():
        return {"labels": list(service.labels)}

    return app


def _version() -> str:
    from abhinaya import __version__

    return __version__


# ----------------------------------------------------------------------------- the server
def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (port 0: a free port, see ``getsockname``)."""
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, kind, proto, _, address = info[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(app, sock: socket.socket, *, log_level: str = "warning", access_log: bool = False):
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, timeout_keep_alive=30,
                            timeout_graceful_shutdown=10, lifespan="on")
    return uvicorn.Server(config)


def serve(
    service: ServedModel,
    settings: ServeSettings,
    *,
    log_level: str = "warning",
    access_log: bool = False,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run the service until interrupted (Ctrl-C / SIGTERM). ``ready(url)`` is called once the socket is bound."""
    sock = bind_socket(settings.host, settings.port)
    server = make_server(create_app(service, settings), sock, log_level=log_level, access_log=access_log)
    if ready is not None:
        ready(url_of(sock))
    server.run(sockets=[sock])


class BackgroundServer:
    """The real uvicorn server in a background thread (tests, benchmarks): ``with BackgroundServer(service) as s:``
    then talk HTTP to ``s.url``; leaving the block stops it (bounded wait)."""

    def __init__(self, service: ServedModel, settings: ServeSettings | None = None, *, log_level: str = "warning"):
        self.settings = settings or ServeSettings(port=0)
        self.app = create_app(service, self.settings)
        self.sock = bind_socket(self.settings.host, self.settings.port)
        self.url = url_of(self.sock)
        self.server = make_server(self.app, self.sock, log_level=log_level)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="abhinaya-serve")

    def start(self, timeout: float = 30.0) -> "BackgroundServer":
        import time

        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()
        if self.thread.is_alive():
            raise RuntimeError(f"the server did not stop within {timeout} s")

    @property
    def batcher(self) -> Batcher:
        return self.app.state.batcher

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["BackgroundServer", "ServeSettings", "bind_socket", "create_app", "serve"]
