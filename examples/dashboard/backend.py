"""The dashboard example's backend: a few live figures, each published to a topic of its own.

Every `INTERVAL_SECONDS` (1 s) it publishes each figure to `https://example.com/dashboard/NAME`
as `{"figure": NAME, "value": ...}`. The page subscribes to all of them with ONE EventSource
(`?topic=...&topic=...`): one connection, however many figures. The figures are public (the hub
runs with `--anonymous`). Since an SSE event does not carry its topic, the data names its figure.

The figures are made up, except the load average of this machine.
"""

import json
import os
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lib"))

from mercure import HubError, publish  # noqa: E402
from webapp import App  # noqa: E402

INTERVAL_SECONDS = float(os.environ.get("INTERVAL_SECONDS", "1"))

app = App(Path(__file__).resolve().parent)


def figures():
    """Yields the next value of every figure, forever."""
    visitors, orders = 120, 0
    while True:
        visitors = max(0, visitors + random.randint(-5, 5))
        orders += random.choice((0, 0, 1, 2))
        yield {
            "visitors": visitors,
            "orders": orders,
            "load": round(os.getloadavg()[0], 2),
            "clock": time.strftime("%H:%M:%S"),
        }


def publish_figures() -> None:
    for values in figures():
        for name, value in values.items():
            content = json.dumps({"figure": name, "value": value})
            topic = f"https://example.com/dashboard/{name}"
            try:
                publish(app.settings.hub_url, app.settings.key, topic, content)
            except HubError as error:  # the hub is down: try again next time
                print(error, file=sys.stderr, flush=True)
                break
        time.sleep(INTERVAL_SECONDS)


if __name__ == "__main__":
    threading.Thread(target=publish_figures, daemon=True).start()
    app.run()
