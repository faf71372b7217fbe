"""Herald against Python clients nobody on the project wrote.

Starts the real `herald serve --transport memory` on a free loopback port, mints tokens with
PyJWT, publishes with requests and subscribes with sseclient-py (over a streaming requests
response, as its documentation shows).

The binary is $HERALD_BIN, else target/debug/herald of this repository (`cargo build -p herald`).
"""

import json
import os
import pathlib
import queue
import subprocess
import threading
import time

import jwt
import pytest
import requests
import sseclient

REPO = pathlib.Path(__file__).resolve().parents[3]
KEY = "python-interop-test-key-0123456789abcdef"
TIMEOUT = 10


def herald_binary():
    path = pathlib.Path(os.environ.get("HERALD_BIN") or REPO / "target" / "debug" / "herald")
    if not path.is_file():
        pytest.fail(f"{path} does not exist: build it with `cargo build -p herald`, or set HERALD_BIN")
    return str(path)


@pytest.fixture(scope="module")
def hub():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "MERCURE_")) and k != "RUST_LOG"}
    env["NO_COLOR"] = "1"
    process = subprocess.Popen(
        [herald_binary(), "serve", "--transport", "memory", "--listen", "127.0.0.1:0",
         "--jwt-key", KEY, "--anonymous"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True,
    )
    lines = queue.Queue()

    def drain():
        for line in process.stderr:
            lines.put(line)

    threading.Thread(target=drain, daemon=True).start()
    url = None
    deadline = time.monotonic() + 20
    while url is None:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            process.kill()
            pytest.fail("herald serve did not say where it listens within 20 s")
        if "listening on " in line:
            url = line.split("listening on ", 1)[1].strip()
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def token(claim):
    return jwt.encode({"mercure": claim, "exp": int(time.time()) + 600}, KEY, algorithm="HS256")


PUBLISHER = {"publish": ["*"]}


def publish(hub, fields, claim=PUBLISHER):
    response = requests.post(
        hub, data=fields, headers={"Authorization": f"Bearer {token(claim)}"}, timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    return response.text.strip()


def subscribe(hub, topics, headers=None, params=()):
    """Opens a subscription; when this returns, the hub has registered it."""
    response = requests.get(
        hub,
        params=[("topic", t) for t in topics] + list(params),
        headers={"Accept": "text/event-stream", **(headers or {})},
        stream=True,
        timeout=(TIMEOUT, TIMEOUT),
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return response, sseclient.SSEClient(response).events()


def test_public_update_reaches_a_template_subscription(hub):
    response, events = subscribe(hub, ["https://example.com/books/{id}"])
    with response:
        book = {"@id": "https://example.com/books/1", "title": "Dune", "availability": "InStock"}
        update_id = publish(hub, {"topic": "https://example.com/books/1", "data": json.dumps(book)})
        event = next(events)
        assert event.id == update_id
        assert event.id.startswith("urn:uuid:")
        assert event.event == "message"
        assert json.loads(event.data) == book


def test_type_retry_multiline_data_and_json_publishing(hub):
    response, events = subscribe(hub, ["https://example.com/feed"])
    with response:
        first = publish(hub, [("topic", "https://example.com/feed"), ("data", "line 1\nline 2"),
                              ("type", "news"), ("retry", "2500"), ("id", "feed-1")])
        assert first == "feed-1"
        reply = requests.post(
            hub,
            json={"topic": "https://example.com/feed", "data": {"title": "Dune"}},
            headers={"Authorization": f"Bearer {token(PUBLISHER)}"},
            timeout=TIMEOUT,
        )
        assert reply.status_code == 200, reply.text
        event = next(events)
        assert (event.id, event.event, event.retry, event.data) == ("feed-1", "news", "2500", "line 1\nline 2")
        event = next(events)
        assert event.id == reply.text.strip()
        assert json.loads(event.data) == {"title": "Dune"}


def test_private_update_needs_a_subscribe_claim(hub):
    topic = "https://example.com/users/42/inbox"
    private_token = token({"subscribe": ["https://example.com/users/42/{+rest}"]})
    authorized, authorized_events = subscribe(hub, [topic], headers={"Authorization": f"Bearer {private_token}"})
    anonymous, anonymous_events = subscribe(hub, [topic])
    with authorized, anonymous:
        secret = publish(hub, {"topic": topic, "data": "secret", "private": "on"})
        public = publish(hub, {"topic": topic, "data": "public"})
        assert [next(authorized_events).id, next(authorized_events).id] == [secret, public]
        # The anonymous subscriber's first event is the public one: the private one was not sent.
        assert next(anonymous_events).id == public


def test_a_token_for_other_topics_does_not_receive_private_updates(hub):
    topic = "https://example.com/users/7/inbox"
    other = token({"subscribe": ["https://example.com/users/8/{+rest}"]})
    response, events = subscribe(hub, [topic], headers={"Authorization": f"Bearer {other}"})
    with response:
        publish(hub, {"topic": topic, "data": "secret", "private": "on"})
        public = publish(hub, {"topic": topic, "data": "public"})
        assert next(events).id == public


def test_last_event_id_replays_what_followed(hub):
    topic = "https://example.com/replay"
    ids = [publish(hub, {"topic": topic, "data": str(n)}) for n in range(1, 4)]
    # The header, as EventSource sends it on reconnection.
    response, events = subscribe(hub, [topic], headers={"Last-Event-ID": ids[0]})
    with response:
        assert response.headers.get("Last-Event-ID") == ids[0]
        assert [(e.id, e.data) for e in (next(events), next(events))] == [(ids[1], "2"), (ids[2], "3")]
        # Then live events follow, without the replayed ones again.
        live = publish(hub, {"topic": topic, "data": "4"})
        assert next(events).id == live
    # The draft-07 query parameter.
    response, events = subscribe(hub, [topic], params=[("lastEventID", ids[1])])
    with response:
        assert next(events).id == ids[2]


def test_refusals_say_why(hub):
    response = requests.post(
        hub, data={"topic": "https://example.com/a"}, headers={"Authorization": "Bearer nope"}, timeout=TIMEOUT
    )
    assert response.status_code == 401
    assert response.text.strip()
    wrong_key = jwt.encode({"mercure": PUBLISHER}, "another-key-another-key-another-key", algorithm="HS256")
    response = requests.post(
        hub, data={"topic": "https://example.com/a"}, headers={"Authorization": f"Bearer {wrong_key}"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 401
    assert "signature" in response.text
    response = requests.post(
        hub, data={"topic": "https://example.com/a"},
        headers={"Authorization": f"Bearer {token({'subscribe': ['*']})}"}, timeout=TIMEOUT,
    )
    assert response.status_code == 403
    assert response.text.strip()
