"""The settings of the service (the options of ``abhinaya serve``), the one place their defaults live. Importing
this module needs no web framework, so the command line can show the defaults without loading one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServeSettings:
    """The service's limits and batching (the options of ``abhinaya serve``).

    - ``max_body_mb``: largest request body, MB (10^6 bytes); larger ones get 413 before they are read.
    - ``max_duration``: longest audio per file, seconds (413 above it). A file longer than the model's input (30 s)
      is cut into utterances by a voice-activity detector (``vad``: silero or energy) and each is predicted.
    - ``max_files``: most files in one ``/predict/group`` request.
    - ``max_batch``: most files run through the model together; ``batch_wait_ms``: how long the first request of a
      batch waits for others; ``queue_size``: requests that may wait before 503.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    max_body_mb: float = 20.0
    max_duration: float = 600.0
    vad: str = "silero"
    max_files: int = 16
    max_batch: int = 8
    batch_wait_ms: float = 5.0
    queue_size: int = 64

    def __post_init__(self) -> None:
        if self.max_body_mb <= 0 or self.max_duration <= 0:
            raise ValueError("max_body_mb and max_duration must be positive")
        if self.max_files < 1 or self.max_batch < 1 or self.queue_size < 1:
            raise ValueError("max_files, max_batch and queue_size must be at least 1")
        if self.vad not in ("silero", "energy"):
            raise ValueError(f"vad must be silero or energy, got {self.vad!r}")
        if self.batch_wait_ms < 0:
            raise ValueError("batch_wait_ms must be 0 or more")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, got {self.port}")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1_000_000)


__all__ = ["ServeSettings"]
