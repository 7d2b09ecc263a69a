"""Smoke tests of the demo home (examples/demo): each module is run as the kernel would run it
(`python3 <abs path>/main.py`, from an unrelated working directory) and driven over its pipes;
permissions.yaml must hold the current manifest hashes, and the modules share one copy of the SDK
(lib/, a link to sdk/python/src).

Run: python3 -m unittest discover -s sdk/python
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from test_pons_sdk import REPO, Harness

DEMO = REPO / "examples" / "demo"
MODULES = DEMO / "modules"


class DemoModule(Harness):
    """Runs examples/demo/modules/<name>/main.py with cwd = a temporary directory."""

    def __init__(self, name: str) -> None:  # pylint: disable=super-init-not-called
        self.name = name
        self.cwd = tempfile.TemporaryDirectory()
        self.dir = self.cwd
        self.proc = subprocess.Popen(
            [sys.executable, str(MODULES / name / "main.py")],
            cwd=self.cwd.name,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._start_pumps()

    def init(self, config):
        self.send({"type": "init", "protocolVersion": "1.0", "config": config,
                   "workspacePath": str(DEMO), "projectRoot": str(DEMO)})
        ready = self.expect_type("ready")
        return ready


class DemoModulesTest(unittest.TestCase):
    def start(self, name: str) -> DemoModule:
        module = DemoModule(name)
        self.addCleanup(module.close)
        return module

    def test_greeter_answers_hello_and_logs_config_update(self) -> None:
        m = self.start("greeter")
        ready = m.init({"greeter": {"greeting": "Hello"}})
        self.assertEqual(ready["manifest"]["id"], "greeter")
        m.send({"type": "deps_ready"})
        m.send({"type": "rpc_request", "id": "k1", "from": "hello", "service": "greeting",
                "method": "hello", "params": {"name": "Ann"}})
        self.assertEqual(m.expect_type("rpc_response", id="k1")["result"],
                         {"text": "Hello, Ann!"})
        m.send({"type": "config:update", "config": {"greeter": {"greeting": "Hi"}},
                "changedSections": ["greeter"]})
        log = m.expect_type("log", msg="config updated")
        self.assertEqual(log["data"], {"changed": ["greeter"], "greeting": "Hi"})
        m.send({"type": "rpc_request", "id": "k2", "from": "hello", "service": "greeting",
                "method": "hello", "params": {"name": "Bo"}})
        self.assertEqual(m.expect_type("rpc_response", id="k2")["result"], {"text": "Hi, Bo!"})
        m.send({"type": "rpc_request", "id": "k3", "from": "hello", "service": "greeting",
                "method": "nope"})
        self.assertIn("error", m.expect_type("rpc_response", id="k3"))
        m.send({"type": "shutdown"})
        self.assertEqual(m.wait_exit(), 0)

    def test_hello_calls_greeting_and_publishes(self) -> None:
        m = self.start("hello")
        m.init({"hello": {"name": "pons"}})
        m.send({"type": "deps_ready"})
        for round_ in range(2):  # the loop goes on after the first answer
            request = m.expect_type("rpc_request", service="greeting", method="hello")
            self.assertEqual(request["params"], {"name": "pons"})
            m.send({"type": "rpc_response", "id": request["id"],
                    "result": {"text": "Hello, pons! #%d" % round_}})
            published = m.expect_type("publish", topic="demo:greetings")
            self.assertEqual(published["payload"],
                             {"text": "Hello, pons! #%d" % round_, "from": "hello"})
            m.expect_type("log", msg="greeter says: Hello, pons! #%d" % round_)
        m.send({"type": "shutdown"})
        self.assertEqual(m.wait_exit(), 0)

    def test_clock_ticks_and_logs_greetings(self) -> None:
        m = self.start("clock")
        m.init({})
        m.send({"type": "deps_ready"})
        tick = m.expect_type("publish", topic="demo:tick")
        self.assertIsInstance(tick["payload"]["ts"], int)
        m.send({"type": "deliver", "id": "d1", "topic": "demo:greetings",
                "payload": {"text": "Hello, pons!", "from": "hello"}})
        m.expect_type("log", msg="clock heard: Hello, pons!")  # on_message runs, then ack
        m.expect_type("ack", id="d1")
        m.proc.stdin.close()  # end of input: the module exits 0 on its own
        self.assertEqual(m.wait_exit(), 0)


class DemoHomeTest(unittest.TestCase):
    def test_permissions_yaml_is_current(self) -> None:
        """approve.py --check: hashes, permissions and capabilities match the manifests."""
        done = subprocess.run([sys.executable, str(DEMO / "approve.py"), "--check"],
                              capture_output=True, text=True, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)

    def test_hashes_are_sha256_of_manifest_bytes(self) -> None:
        text = (DEMO / "permissions.yaml").read_text(encoding="utf-8")
        for manifest in sorted(MODULES.glob("*/module.json")):
            module_id = json.loads(manifest.read_bytes())["id"]
            digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
            self.assertIn('  %s:\n' % module_id, text)
            self.assertIn('baseManifestHash: "%s"' % digest, text, module_id)

    def test_manifests_are_minimal_python_modules(self) -> None:
        names = sorted(p.name for p in MODULES.iterdir() if p.is_dir())
        self.assertEqual(names, ["clock", "greeter", "hello"])
        for name in names:
            manifest = json.loads((MODULES / name / "module.json").read_bytes())
            self.assertEqual(manifest["runtime"], "python")
            self.assertEqual(manifest["entrypoint"], "main.py")
            # The module's own directory and the home's lib/, which holds the SDK.
            self.assertEqual(manifest["permissions"], {"read": [".", "../../lib"]})
            self.assertTrue((MODULES / name / "main.py").is_file())

    def test_one_shared_sdk_copy(self) -> None:
        """lib/ is a link to sdk/python/src: the demo holds no copy of the SDK of its own."""
        lib = DEMO / "lib"
        self.assertTrue(lib.is_symlink(), "examples/demo/lib must be a link to sdk/python/src")
        self.assertEqual(os.readlink(lib), "../../sdk/python/src")
        self.assertEqual(lib.resolve(), (REPO / "sdk" / "python" / "src").resolve())
        copies = []
        for root, dirs, files in os.walk(DEMO):  # does not follow the lib/ link
            copies += [os.path.join(root, n) for n in dirs + files if n.startswith("pons_sdk")]
        self.assertEqual(copies, [])

    def test_modules_import_the_sdk_from_lib(self) -> None:
        m = self.start_probe()
        self.assertEqual(Path(m).resolve(),
                         (REPO / "sdk" / "python" / "src" / "pons_sdk" / "__init__.py").resolve())

    def start_probe(self) -> str:
        """Where greeter's main.py finds pons_sdk when run from an unrelated directory."""
        code = ("import runpy, sys; sys.argv = ['main.py']; "
                "g = runpy.run_path(%r, run_name='probe'); print(g['pons_sdk'].__file__)"
                % str(MODULES / "greeter" / "main.py"))
        with tempfile.TemporaryDirectory() as cwd:
            done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                                  text=True, timeout=30, env=dict(os.environ, PYTHONPATH=""))
        self.assertEqual(done.returncode, 0, done.stderr)
        return done.stdout.strip()


if __name__ == "__main__":
    unittest.main()
