"""A local OpenAI-compatible chat-completions server for tests: it answers from a script, records what it was sent,
and never reaches the network."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeChatServer:
    """A local chat-completions server answering from a script of actions:
    ``("ok", text)``, ``("status", code, headers)`` or ``("sleep", seconds)``."""

    def __init__(self, script):
        self.script = list(script)
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"time": time.monotonic(), "body": body, "auth": self.headers.get("Authorization"), "path": self.path})
                action = server.script.pop(0) if len(server.script) > 1 else server.script[0]
                try:
                    if action[0] == "sleep":
                        time.sleep(action[1])
                        action = ("ok", "late")
                    if action[0] == "ok":
                        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": action[1]}}]}).encode()
                        self.send_response(200)
                    else:
                        data = json.dumps({"error": {"message": f"scripted {action[1]}"}}).encode()
                        self.send_response(action[1])
                        for key, value in (action[2] if len(action) > 2 else {}).items():
                            self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


__all__ = ["FakeChatServer"]
