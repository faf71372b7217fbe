"""The chat example's backend: per-user tokens for the topics a user joins, and a publish route.

- `POST /login {"user": "ada", "topics": ["chatgpt", "robot"]}` mints a token that lets ada
  receive the private updates of those topics, and hands it to her browser in the
  `mercureAuthorization` cookie (path `/.well-known/mercure`, so it is sent to the hub and
  nowhere else). The page then opens one EventSource on those topics, with credentials.
- `POST /publish {"topic": "robot", "data": "hi robot"}` publishes a private update to the
  topic: it reaches exactly the users who joined it (the hub routes by `topic=` and checks the
  token), and nobody without a token, even one who asks for the topic.
"""

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lib"))

from mercure import publish, subscriber_token  # noqa: E402
from webapp import App, BadRequest, Request, Response  # noqa: E402

TOPICS = ("chatgpt", "robot", "weather")
USER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

app = App(Path(__file__).resolve().parent)


def topic_url(topic: str) -> str:
    """The Mercure topic (an IRI) of a chat topic."""
    return f"https://example.com/chat/{topic}"


@app.route("POST", "/login")
def login(request: Request) -> Response:
    user = request.json.get("user", "")
    topics = request.json.get("topics", [])
    if not isinstance(user, str) or not USER_NAME.match(user):
        raise BadRequest("user: 1 to 32 letters, digits, '-' or '_'")
    if not isinstance(topics, list) or not topics or not set(topics) <= set(TOPICS):
        raise BadRequest(f"topics: one or more of {', '.join(TOPICS)}")
    urls = [topic_url(topic) for topic in topics]
    token = subscriber_token(urls, app.settings.key)
    cookie = f"mercureAuthorization={token}; Path=/.well-known/mercure; HttpOnly; SameSite=Strict"
    return Response({"user": user, "topics": urls}, cookies=[cookie])


@app.route("POST", "/publish")
def publish_message(request: Request) -> Response:
    topic = request.json.get("topic")
    data = request.json.get("data")
    if topic not in TOPICS:
        raise BadRequest(f"topic: one of {', '.join(TOPICS)}")
    if not isinstance(data, str) or not data:
        raise BadRequest("data: the message, a non-empty string")
    sender = request.json.get("from")
    if sender is not None and (not isinstance(sender, str) or not USER_NAME.match(sender)):
        raise BadRequest("from: the sender's user name, if any")
    message = json.dumps({"topic": topic, "data": data, "from": sender})
    id = publish(app.settings.hub_url, app.settings.key, topic_url(topic), message, private=True)
    return Response({"id": id})


if __name__ == "__main__":
    app.run()
