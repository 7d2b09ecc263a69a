#!/usr/bin/env python3
"""clock: a standalone module.

Publishes `demo:tick` with {"ts": <milliseconds since the epoch>} every second once active, and
logs every message it receives on `demo:greetings`.
"""

import sys
import threading
import time
from pathlib import Path

sys.dont_write_bytecode = True  # keep the module and SDK directories free of __pycache__
# The SDK: the home's lib/ (a link to sdk/python/src), readable because module.json's
# permissions.read approves "../../lib".
sys.path.insert(1, str(Path(__file__).resolve().parents[2] / "lib"))

import pons_sdk  # noqa: E402

TICK_SECONDS = 1.0


class Clock(pons_sdk.Module):
    def __init__(self):
        super().__init__()
        self._started = False

    def on_deps_ready(self):
        if self._started:  # a repeated deps_ready must not start a second ticker
            return
        self._started = True
        threading.Thread(target=self._tick, name="clock-tick", daemon=True).start()

    def _tick(self):
        while not self.shutting_down.wait(TICK_SECONDS):
            self.publish("demo:tick", {"ts": int(time.time() * 1000)})

    def on_message(self, topic, payload):
        if topic == "demo:greetings":
            text = payload.get("text") if isinstance(payload, dict) else payload
            self.log("info", "clock heard: %s" % text)


if __name__ == "__main__":
    Clock().run()
