"""The progress example's backend: a long job that reports each step to the hub.

`POST /jobs` starts a job and answers with its topic. The job publishes one update per step with
the event type `progress` (the page listens with `addEventListener('progress', ...)`), then one
of type `done`. Each update carries `retry` (`RETRY_MS`, 1000 ms): how long the browser waits
before reconnecting when its stream breaks, instead of its own default (3 s in Chromium).

Surviving a restart of the hub takes two things, one on each side:
- here, a step published while the hub is down is tried again until the hub is back
  (`publish(..., patience_s=...)`), so no step is skipped;
- in the browser, EventSource reconnects by itself and sends `Last-Event-ID`, the id of the last
  step it has; the hub keeps its history on disk (the default `embedded` transport) and
  replays every step after that one, so none is lost and none is shown twice.

Job topics are public (the hub runs with `--anonymous`) and unguessable (a random UUID).
"""

import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lib"))

from mercure import HubError, publish  # noqa: E402
from webapp import App, Request, Response  # noqa: E402

STEPS = int(os.environ.get("JOB_STEPS", "20"))
STEP_SECONDS = float(os.environ.get("JOB_STEP_SECONDS", "0.5"))
RETRY_MS = 1000
# How long a step waits for the hub to come back before the job gives up.
HUB_PATIENCE_S = 120

app = App(Path(__file__).resolve().parent)


def run_job(topic: str) -> None:
    def report(event_type: str, content: dict) -> None:
        publish(
            app.settings.hub_url,
            app.settings.key,
            topic,
            json.dumps(content),
            event_type=event_type,
            retry_ms=RETRY_MS,
            patience_s=HUB_PATIENCE_S,
        )

    try:
        for step in range(1, STEPS + 1):
            time.sleep(STEP_SECONDS)  # the work of one step
            report("progress", {"step": step, "of": STEPS})
        report("done", {"steps": STEPS})
    except HubError as error:
        print(f"job {topic} abandoned: {error}", file=sys.stderr, flush=True)


@app.route("POST", "/jobs")
def start_job(_request: Request) -> Response:
    topic = f"https://example.com/jobs/{uuid.uuid4()}"
    threading.Thread(target=run_job, args=(topic,), daemon=True).start()
    return Response({"topic": topic, "steps": STEPS})


if __name__ == "__main__":
    app.run()
