"""The private-notifications example's backend: each user's own stream, by cookie.

- `POST /login {"user": "alice"}` stands for a real login. It hands alice's browser a token in
  the `mercureAuthorization` cookie (`Path=/.well-known/mercure`: sent to the hub, and only to
  the hub; `HttpOnly`: out of reach of scripts; `SameSite=Strict`). The token allows the
  private updates of alice's topic and nothing else.
- `POST /notify {"to": "alice", "message": "..."}` publishes a private update to alice's topic.

The page never sees the token and never puts it in a URL: it opens
`new EventSource(hub + "?topic=" + its topic, {withCredentials: true})`, and the browser sends
the cookie. A page of bob's may ask for alice's topic (with bob's cookie): the hub accepts the
subscription but never sends it one of alice's private updates, as bob's token does not cover
her topic.

The cookie reaches the hub because the hub and this backend are on the same host (cookies are
not per port). In production, put them on one domain (`app.example.com`, `hub.example.com`) and
add `Domain=example.com` to the cookie.
"""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lib"))

from mercure import publish, subscriber_token  # noqa: E402
from webapp import App, BadRequest, Request, Response  # noqa: E402

USER_NAME = re.compile(r"^[a-z0-9_-]{1,32}$")

app = App(Path(__file__).resolve().parent)


def notifications_topic(user: str) -> str:
    """The Mercure topic of a user's private notifications."""
    return f"https://example.com/users/{user}/notifications"


def user_name(value) -> str:
    if not isinstance(value, str) or not USER_NAME.match(value):
        raise BadRequest("user names: 1 to 32 lowercase letters, digits, '-' or '_'")
    return value


@app.route("POST", "/login")
def login(request: Request) -> Response:
    user = user_name(request.json.get("user"))
    topic = notifications_topic(user)
    token = subscriber_token([topic], app.settings.key)
    cookie = f"mercureAuthorization={token}; Path=/.well-known/mercure; HttpOnly; SameSite=Strict"
    return Response({"user": user, "topic": topic}, cookies=[cookie])


@app.route("POST", "/notify")
def notify(request: Request) -> Response:
    user = user_name(request.json.get("to"))
    message = request.json.get("message")
    if not isinstance(message, str) or not message:
        raise BadRequest("message: the notification, a non-empty string")
    topic = notifications_topic(user)
    id = publish(app.settings.hub_url, app.settings.key, topic, message, private=True)
    return Response({"id": id, "topic": topic})


if __name__ == "__main__":
    app.run()
