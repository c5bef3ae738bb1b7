"""A real webhook receiver for tests: an HTTP server in a thread that verifies every
delivery's signature with the `standardwebhooks` library, as a client of the service would,
and answers as each test scripts it (status, delay, headers)."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class Reply:
    status: int = 200
    # Seconds to wait before answering (a slow receiver).
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: str
    # Which of the receiver's secrets verified the signature (empty: none did).
    verified_by: tuple[int, ...]
    at: float

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Answers each delivery with the next scripted `Reply` (200 once the script is used
    up), after checking its signature against every secret it knows."""

    def __init__(self, secrets_: list[str], *, port: int = 0) -> None:
        self._keys = [Webhook(s) for s in secrets_]
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.received: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Without it, replies on a kept-alive connection wait for delayed ACKs (~40 ms).
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = receiver._record(self.path, headers, body)
                time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the sender gave up waiting
                    pass

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def unscript(self) -> None:
        """Answer 200 from now on."""
        with self._lock:
            self._script.clear()

    def _record(self, path: str, headers: dict[str, str], body: str) -> Reply:
        verified = []
        for number, key in enumerate(self._keys):
            try:
                key.verify(body, headers)
            except WebhookVerificationError:
                continue
            verified.append(number)
        with self._lock:
            self.received.append(Received(path, headers, body, tuple(verified), time.monotonic()))
            return self._script.popleft() if self._script else Reply()

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def receiving(secrets_: list[str], *, port: int = 0) -> Iterator[Receiver]:
    receiver = Receiver(secrets_, port=port).start()
    try:
        yield receiver
    finally:
        receiver.stop()
