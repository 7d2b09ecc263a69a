#!/usr/bin/env python3
"""greeter: provides the `greeting` service.

RPC `greeting.hello` with params {"name": "<name>"} answers {"text": "<greeting>, <name>!"},
where <greeting> comes from the `greeter` section of config.yaml (default "Hello"). Editing that
section while the kernel runs sends `config:update`, which this module logs.
"""

import sys
from pathlib import Path

sys.dont_write_bytecode = True  # keep the module and SDK directories free of __pycache__
# The SDK: the home's lib/ (a link to sdk/python/src), readable because module.json's
# permissions.read approves "../../lib".
sys.path.insert(1, str(Path(__file__).resolve().parents[2] / "lib"))

import pons_sdk  # noqa: E402


class Greeter(pons_sdk.Module):
    def greeting(self):
        value = self.section.get("greeting", "Hello")
        return value if isinstance(value, str) and value else "Hello"

    def on_init(self, config):
        self.log("info", "greeter starting", greeting=self.greeting())

    def on_request(self, method, params, from_):
        if method != "hello":
            raise pons_sdk.PonsError("greeting has no method %r; the only method is hello" % method)
        name = params.get("name") if isinstance(params, dict) else None
        if not isinstance(name, str) or not name:
            name = from_ or "world"
        return {"text": "%s, %s!" % (self.greeting(), name)}

    def on_config_update(self, changed_sections):
        self.log("info", "config updated", changed=changed_sections, greeting=self.greeting())

    def on_shutdown(self):
        self.log("info", "greeter stopping")


if __name__ == "__main__":
    Greeter().run()
