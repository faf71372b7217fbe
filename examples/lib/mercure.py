"""What every example backend needs from a Mercure hub, in the Python 3 standard library.

- `token(claims, key)` mints an HS256 JWT, the kind of token Herald verifies with the key it is
  given (`--jwt-key`, or the `HERALD_JWT_KEY` environment variable the examples use).
- `publish(...)` POSTs one update to the hub as a form (the Mercure publish request) with a
  publisher token, and returns the id the hub gave the update.

Real backends use the same two calls; a Mercure library (Symfony's Mercure component, the Rust
`herald_client` crate, ...) does the same with more options. Nothing here is specific to Herald:
any Mercure hub accepts these requests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request

# The hub is on loopback in the examples: never send its traffic through a proxy from the
# environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class HubError(Exception):
    """The hub refused an update (its answer says why) or could not be reached in time."""


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _compact_json(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def token(claims: dict, key: str) -> str:
    """An HS256 JWT with `claims` as payload, signed with `key`."""
    header = _base64url(_compact_json({"alg": "HS256", "typ": "JWT"}))
    payload = _base64url(_compact_json(claims))
    signing_input = f"{header}.{payload}"
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_base64url(signature)}"


def subscriber_token(topics: list, key: str, hours: int = 12) -> str:
    """A token that lets its holder receive the private updates of `topics` (selectors)."""
    expires = int(time.time()) + hours * 3600
    return token({"mercure": {"subscribe": topics}, "exp": expires}, key)


def publish(
    hub: str,
    key: str,
    topic: str,
    data: str,
    *,
    private: bool = False,
    event_type: str | None = None,
    retry_ms: int | None = None,
    patience_s: float = 0,
) -> str:
    """Publishes one update to `topic` and returns its id.

    `event_type` becomes the SSE `event:` field (a browser listens to it with
    `addEventListener(event_type, ...)`), `retry_ms` the SSE `retry:` field (how long a browser
    waits before reconnecting). When the hub cannot be reached (it is restarting, say), the
    publish is tried again for up to `patience_s` seconds; a refusal by the hub (4xx) is never
    retried.
    """
    fields = [("topic", topic), ("data", data)]
    if private:
        fields.append(("private", "on"))
    if event_type is not None:
        fields.append(("type", event_type))
    if retry_ms is not None:
        fields.append(("retry", str(retry_ms)))
    body = urllib.parse.urlencode(fields).encode()
    bearer = token({"mercure": {"publish": [topic]}}, key)
    deadline = time.monotonic() + patience_s
    while True:
        request = urllib.request.Request(
            hub, data=body, headers={"Authorization": f"Bearer {bearer}"}, method="POST"
        )
        try:
            with _OPENER.open(request, timeout=10) as response:
                return response.read().decode()
        except urllib.error.HTTPError as error:
            reason = error.read().decode(errors="replace").strip()
            if error.code < 500 or time.monotonic() >= deadline:
                raise HubError(f"the hub refused the update ({error.code}): {reason}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            if time.monotonic() >= deadline:
                raise HubError(f"cannot reach the hub at {hub}: {error}") from None
        time.sleep(0.2)
