"""A small client for OpenAI-compatible chat-completions endpoints (vLLM, TGI,
llama.cpp server, hosted APIs), standard library only.

``ChatCompletionsClient.chat(messages)`` POSTs ``{url}/chat/completions`` with
the model name, the messages and the sampling settings, and returns the
reply text. Connection errors, timeouts, 429 and 5xx answers are retried with
exponential back-off (a ``Retry-After`` header is honoured); requests are
spaced to stay under ``requests_per_minute``. Other failures are errors that
say what to check (the key, the URL, the model name). The API key is read by
the caller from an environment variable; it never appears in a recipe.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 600.0


class EndpointError(OSError):
    """A chat-completions request that failed for good; the message says what to check.
    (An ``OSError``, so the command line reports it on one line like other I/O failures.)"""


def chat_completions_url(url: str) -> str:
    """``http://host:8000/v1`` -> ``http://host:8000/v1/chat/completions`` (a full URL is kept)."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"endpoint URL {url!r} must start with http:// or https://")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


def _retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ChatCompletionsClient:
    """POSTs chat-completion requests to one endpoint and model.

    Args:
        url: the server's base URL (``.../v1``) or the full ``.../chat/completions`` URL.
        model: the model name sent with every request.
        api_key: sent as ``Authorization: Bearer ...`` when given.
        api_key_env: the environment variable the key came from (named in errors).
        timeout_s: seconds to wait for one answer.
        max_retries: further attempts after a retryable failure (0 = one attempt only).
        requests_per_minute: client-side rate limit (0 = none); request starts are spaced by 60 / rpm s.
        backoff_s / max_backoff_s: retry delay ``backoff_s * 2**attempt``, at most ``max_backoff_s``.
        sleep / clock: injectable for tests.
    """

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        max_retries: int = 5,
        requests_per_minute: float = 0.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
        if requests_per_minute < 0:
            raise ValueError(f"requests_per_minute must be 0 (no limit) or more, got {requests_per_minute}")
        self.url = chat_completions_url(url)
        self.model = model
        self.api_key = api_key
        self.api_key_env = api_key_env
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.interval_s = 60.0 / requests_per_minute if requests_per_minute > 0 else 0.0
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._next_start = 0.0
        self.requests = 0  # HTTP attempts made
        self.retries = 0  # attempts that were retries

    # ------------------------------------------------------------------ public
    def chat(
        self,
        messages: Sequence[dict],
        *,
        temperature: float = 0.7,
        top_p: float = 0.7,
        max_tokens: int = 8,
    ) -> str:
        """The reply text to ``messages`` (``[{"role": ..., "content": ...}, ...]``)."""
        payload = {
            "model": self.model,
            "messages": list(messages),
            "temperature": float(temperature),
            "top_p": float(top_p),
            "max_tokens": int(max_tokens),
        }
        body = json.dumps(payload).encode("utf-8")
        attempt = 0
        while True:
            self._wait_for_slot()
            with self._lock:
                self.requests += 1
                if attempt:
                    self.retries += 1
            try:
                status, headers, data = self._post(body)
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout) as err:
                problem, retry_after = self._describe_connection_error(err), None
            else:
                if status == 200:
                    return self._reply_text(data)
                if status not in RETRY_STATUS:
                    raise EndpointError(self._describe_status(status, data))
                problem = f"HTTP {status}{self._server_message(data)}"
                retry_after = _retry_after_seconds(headers.get("Retry-After"))
            if attempt >= self.max_retries:
                raise EndpointError(f"{self.url}: no answer after {attempt + 1} attempt(s); last problem: {problem}")
            if retry_after is not None:  # the server says when to come back
                delay = min(retry_after, MAX_RETRY_AFTER_S)
            else:
                delay = min(self.backoff_s * 2.0**attempt, self.max_backoff_s)
            self._sleep(delay)
            attempt += 1

    def chat_many(self, conversations: Sequence[Sequence[dict]], *, concurrency: int = 1, **settings) -> list[str]:
        """Replies to several conversations, in order; up to ``concurrency`` requests in flight."""
        if concurrency <= 1 or len(conversations) <= 1:
            return [self.chat(messages, **settings) for messages in conversations]
        with ThreadPoolExecutor(max_workers=min(concurrency, len(conversations))) as pool:
            return list(pool.map(lambda messages: self.chat(messages, **settings), conversations))

    # ------------------------------------------------------------------ helpers
    def _wait_for_slot(self) -> None:
        """Space request starts by ``interval_s`` (shared by all threads)."""
        if self.interval_s <= 0:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next_start)
            self._next_start = start + self.interval_s
        if start > now:
            self._sleep(start - now)

    def _post(self, body: bytes) -> tuple[int, dict, bytes]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            try:
                data = err.read()
            except Exception:  # the body may be unreadable; the status says enough
                data = b""
            return err.code, dict(err.headers or {}), data

    def _describe_connection_error(self, err: BaseException) -> str:
        reason = getattr(err, "reason", err)
        if isinstance(reason, (TimeoutError, socket.timeout)) or isinstance(err, (TimeoutError, socket.timeout)):
            return f"no answer within {self.timeout_s:g} s (timeout_s)"
        return f"cannot connect ({reason})"

    @staticmethod
    def _server_message(data: bytes) -> str:
        text = data.decode("utf-8", errors="replace").strip()
        try:
            parsed = json.loads(text)
            error = parsed.get("error") if isinstance(parsed, dict) else None
            if isinstance(error, dict) and error.get("message"):
                text = str(error["message"])
            elif isinstance(error, str):
                text = error
        except ValueError:
            pass
        return f": {text[:300]}" if text else ""

    def _describe_status(self, status: int, data: bytes) -> str:
        message = self._server_message(data)
        if status in (401, 403):
            key_note = "" if self.api_key else f" (${self.api_key_env} is not set)"
            return (
                f"{self.url}: HTTP {status}, the server refused the credentials{message}; "
                f"check the key in ${self.api_key_env}{key_note}"
            )
        if status == 404:
            return (
                f"{self.url}: HTTP 404{message}; check the endpoint URL (an OpenAI-compatible server's base "
                f"URL ends in /v1) and the model name {self.model!r}"
            )
        if status in (400, 422):
            return (
                f"{self.url}: HTTP {status}, the server rejected the request{message}; "
                f"check the model name {self.model!r} and the sampling settings"
            )
        return f"{self.url}: HTTP {status}{message}"

    def _reply_text(self, data: bytes) -> str:
        try:
            parsed = json.loads(data.decode("utf-8"))
            content = parsed["choices"][0]["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            excerpt = data[:300].decode("utf-8", errors="replace")
            raise EndpointError(f"{self.url}: not a chat-completions answer: {excerpt!r}") from None
        return "" if content is None else str(content)


__all__ = ["ChatCompletionsClient", "EndpointError", "chat_completions_url"]
