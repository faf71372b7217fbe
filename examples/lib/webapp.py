"""The web side of every example backend, in the Python 3 standard library.

An example's `backend.py` builds an `App` on its own directory, adds its few JSON routes with
`@app.route(METHOD, PATH)`, and calls `app.run()`. The app then

- reads its settings from the environment (`Settings.from_env`): the hub's URL, the key shared
  with the hub, the port to listen on;
- serves the example's page (`index.html` at `/`) and `GET /config`, which tells the page where
  the hub is, so that nothing in the page is hard-coded;
- prints `listening on http://HOST:PORT/` once it accepts connections (the browser tests wait
  for that line).

Each request is handled on a thread of its own (`ThreadingHTTPServer`), so a route may block on a
publish. A route raises `BadRequest` for a bad request (400) and lets `HubError` through when the
hub refuses an update or cannot be reached (502); both answer `{"error": "..."}`, which the pages
show. This is demonstration code: no sessions, no CSRF protection of the backend's own
routes, no TLS.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from mercure import HubError

# Weaker HMAC keys are refused by the hub outside --dev; refuse them here too, with the same fix.
MIN_KEY_BYTES = 32
DEFAULT_HUB_URL = "http://127.0.0.1:3000/.well-known/mercure"
PAGE_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}


@dataclass(frozen=True)
class Settings:
    """Where the hub is and the key shared with it, from the environment."""

    hub_url: str
    key: str
    host: str
    port: int

    @staticmethod
    def from_env() -> Settings:
        key = os.environ.get("HERALD_JWT_KEY", "")
        if len(key.encode()) < MIN_KEY_BYTES:
            sys.exit(
                f"HERALD_JWT_KEY must hold the hub's HMAC key, at least {MIN_KEY_BYTES} bytes: "
                "export HERALD_JWT_KEY=\"$(openssl rand -base64 48)\", or start the example with its "
                "run.sh, which makes one"
            )
        port = os.environ.get("PORT", "8000")
        if not port.isdigit() or int(port) > 65535:
            sys.exit(f"PORT must be a port number, not {port!r}: PORT=8000")
        return Settings(
            hub_url=os.environ.get("HUB_URL", DEFAULT_HUB_URL),
            key=key,
            host=os.environ.get("HOST", "127.0.0.1"),
            port=int(port),
        )


class BadRequest(Exception):
    """Raised by a route: the client gets 400 with this message."""


@dataclass
class Request:
    """What a route sees of a request."""

    path: str
    json: dict


@dataclass
class Response:
    """What a route answers: a JSON body, and `Set-Cookie` values if any."""

    body: dict
    status: int = 200
    cookies: list = field(default_factory=list)


Route = Callable[[Request], Response]


class App:
    """An example's backend: its page, `/config`, and the JSON routes it adds."""

    def __init__(self, directory: Path, settings: Settings | None = None):
        self.directory = directory
        self.settings = settings or Settings.from_env()
        self.routes: dict[tuple[str, str], Route] = {
            ("GET", "/config"): lambda _request: Response({"hub": self.settings.hub_url}),
        }

    def route(self, method: str, path: str) -> Callable[[Route], Route]:
        def register(handler: Route) -> Route:
            self.routes[(method, path)] = handler
            return handler

        return register

    def page(self, path: str) -> tuple[bytes, str] | None:
        """The file of this example's directory that `path` names, if it is a page."""
        name = "index.html" if path == "/" else path.lstrip("/")
        file = (self.directory / name).resolve()
        if file.parent != self.directory.resolve() or file.suffix not in PAGE_TYPES:
            return None
        if not file.is_file():
            return None
        return file.read_bytes(), PAGE_TYPES[file.suffix]

    def run(self) -> None:
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.dispatch("GET")

            def do_POST(self) -> None:
                self.dispatch("POST")

            def dispatch(self, method: str) -> None:
                path = self.path.split("?", 1)[0]
                handler = app.routes.get((method, path))
                if handler is None:
                    page = app.page(path) if method == "GET" else None
                    if page is None:
                        return self.send(404, b"not found\n", "text/plain")
                    return self.send(200, *page)
                try:
                    response = handler(self.request_of(path))
                except BadRequest as error:
                    response = Response({"error": str(error)}, status=400)
                except HubError as error:  # the page shows why
                    self.log_error("%s %s: %s", method, path, error)
                    response = Response({"error": str(error)}, status=502)
                body = json.dumps(response.body).encode()
                self.send(response.status, body, "application/json", response.cookies)

            def request_of(self, path: str) -> Request:
                length = self.headers.get("Content-Length") or "0"
                if not length.isdigit():
                    raise BadRequest("Content-Length must be a number")
                length = int(length)
                raw = self.rfile.read(length) if length else b"{}"
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise BadRequest("the body must be JSON") from None
                if not isinstance(body, dict):
                    raise BadRequest("the body must be a JSON object")
                return Request(path=path, json=body)

            def send(self, status: int, body: bytes, content_type: str, cookies=()) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for cookie in cookies:
                    self.send_header("Set-Cookie", cookie)
                self.end_headers()
                self.wfile.write(body)

        try:
            server = ThreadingHTTPServer((self.settings.host, self.settings.port), Handler)
        except OSError as error:
            sys.exit(
                f"cannot listen on {self.settings.host}:{self.settings.port} ({error.strerror}): "
                "choose another port with PORT=8001"
            )
        server.daemon_threads = True
        host, port = server.server_address[:2]
        print(f"listening on http://{host}:{port}/ (hub: {self.settings.hub_url})", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
