"""The chat-completions client against a local fake server: the request, retries, time-outs, clear errors and
rate limiting."""

from __future__ import annotations

import time

import pytest

from abhinaya.models.chat_endpoint import (
    ChatCompletionsClient,
    EndpointError,
    chat_completions_url,
)
from abhinaya.testing.chat_server import FakeChatServer

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "sentence: wow"}]


def client_for(server, **settings) -> ChatCompletionsClient:
    defaults = {"api_key": "k-123", "timeout_s": 5.0, "max_retries": 3, "backoff_s": 0.01}
    return ChatCompletionsClient(server.url, "llama-70b", **{**defaults, **settings})


def test_endpoint_success_sends_the_request():
    with FakeChatServer([("ok", "Happy.")]) as server:
        client = client_for(server)
        assert client.chat(MESSAGES, temperature=0.7, top_p=0.7, max_tokens=8) == "Happy."
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer k-123"
    assert request["body"] == {"model": "llama-70b", "messages": MESSAGES, "temperature": 0.7, "top_p": 0.7, "max_tokens": 8}
    assert (client.requests, client.retries) == (1, 0)


def test_endpoint_honours_retry_after_on_429():
    waits = []
    with FakeChatServer([("status", 429, {"Retry-After": "0.05"}), ("ok", "sad")]) as server:
        client = client_for(server, sleep=lambda s: (waits.append(s), time.sleep(s)))
        assert client.chat(MESSAGES) == "sad"
    assert (client.requests, client.retries) == (2, 1)
    assert waits == [pytest.approx(0.05)]


def test_endpoint_retries_server_errors_with_backoff():
    waits = []
    with FakeChatServer([("status", 500), ("status", 503), ("ok", "fear")]) as server:
        client = client_for(server, sleep=waits.append)
        assert client.chat(MESSAGES) == "fear"
    assert client.retries == 2 and waits == [pytest.approx(0.01), pytest.approx(0.02)]


def test_endpoint_timeout_is_a_clear_error_after_max_retries():
    with FakeChatServer([("sleep", 0.6)]) as server:
        client = client_for(server, timeout_s=0.15, max_retries=1)
        with pytest.raises(EndpointError, match=r"no answer after 2 attempt\(s\).*within 0.15 s"):
            client.chat(MESSAGES)
    assert client.requests == 2


def test_endpoint_refused_key_names_the_variable():
    with FakeChatServer([("status", 401)]) as server:
        client = client_for(server, api_key=None)
        with pytest.raises(EndpointError, match=r"check the key in \$OPENAI_API_KEY \(\$OPENAI_API_KEY is not set\)"):
            client.chat(MESSAGES)
        assert client.requests == 1  # not retried
        with pytest.raises(EndpointError, match="HTTP 404.*model name 'llama-70b'"):
            server.script = [("status", 404)]
            client.chat(MESSAGES)


def test_endpoint_cannot_connect_is_clear():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ChatCompletionsClient(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff_s=0.0)
    with pytest.raises(EndpointError, match="cannot connect"):
        client.chat(MESSAGES)


def test_endpoint_rate_limit_spaces_requests():
    with FakeChatServer([("ok", "happy")]) as server:
        client = client_for(server, requests_per_minute=1200)  # one request per 50 ms
        started = time.monotonic()
        replies = client.chat_many([MESSAGES] * 4, concurrency=4)
        elapsed = time.monotonic() - started
    assert replies == ["happy"] * 4
    assert elapsed >= 0.15 - 1e-3
    arrivals = sorted(r["time"] for r in server.requests)
    assert all(b - a >= 0.04 for a, b in zip(arrivals, arrivals[1:]))


def test_endpoint_url_forms():
    assert chat_completions_url("http://h:8000/v1/") == "http://h:8000/v1/chat/completions"
    assert chat_completions_url("https://h/v1/chat/completions") == "https://h/v1/chat/completions"
    with pytest.raises(ValueError, match="http"):
        chat_completions_url("h:8000/v1")
