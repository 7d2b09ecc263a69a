#!/usr/bin/env python3
"""hello: requires the `greeting` service.

Once its dependencies are ready it calls `greeting.hello` every 2 seconds with the name from the
`hello` section of config.yaml (default "pons"), publishes the answer on `demo:greetings` and logs
it.
"""

import sys
import threading
from pathlib import Path

sys.dont_write_bytecode = True  # keep the module and SDK directories free of __pycache__
# The SDK: the home's lib/ (a link to sdk/python/src), readable because module.json's
# permissions.read approves "../../lib".
sys.path.insert(1, str(Path(__file__).resolve().parents[2] / "lib"))

import pons_sdk  # noqa: E402

INTERVAL_SECONDS = 2.0


class Hello(pons_sdk.Module):
    def __init__(self):
        super().__init__()
        self._started = False

    def name(self):
        value = self.section.get("name", "pons")
        return value if isinstance(value, str) and value else "pons"

    def on_deps_ready(self):
        if self._started:  # a repeated deps_ready must not start a second loop
            return
        self._started = True
        threading.Thread(target=self._loop, name="hello-loop", daemon=True).start()

    def _loop(self):
        while not self.shutting_down.is_set():
            self.greet_once()
            if self.shutting_down.wait(INTERVAL_SECONDS):
                return

    def greet_once(self):
        try:
            answer = self.rpc("greeting", "hello", {"name": self.name()}, timeout=5)
        except pons_sdk.PonsError as err:
            self.log("warn", "greeting.hello failed", error=str(err))
            return
        text = answer.get("text") if isinstance(answer, dict) else None
        self.publish("demo:greetings", {"text": text, "from": self.module_id})
        self.log("info", "greeter says: %s" % text)

    def on_config_update(self, changed_sections):
        self.log("info", "config updated", changed=changed_sections, name=self.name())


if __name__ == "__main__":
    Hello().run()
