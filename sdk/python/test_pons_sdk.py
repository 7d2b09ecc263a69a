"""Tests of pons_sdk: a tiny module runs as a subprocess and is driven over its pipes, the way the
kernel drives it (init -> ready -> deps_ready -> rpc_request -> shutdown, and the rest of the
protocol). The SDK is imported from src/ (the package's source), as the demo home does.

Run: python3 -m unittest discover -s sdk/python
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SRC = HERE / "src"

DEADLINE = 10.0  # seconds to wait for any expected message

MODULE_SOURCE = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, %(sdk_dir)r)
    import pons_sdk

    class Tiny(pons_sdk.Module):
        def on_install(self):
            self.log("info", "installed")

        def on_init(self, config):
            if config.get("tiny", {}).get("fail"):
                raise RuntimeError("bad config")
            print("stray print must not reach stdout")
            self.log("info", "init", keys=sorted(config))

        def on_deps_ready(self):
            self.publish("tiny:up", {"ok": True})

        def on_service_available(self, service):
            self.log("info", "service", service=service)

        def on_message(self, topic, payload):
            if topic == "tiny:bad":
                raise ValueError("bad payload")
            self.log("info", "got", topic=topic, payload=payload)

        def on_request(self, method, params, from_):
            if method == "echo":
                return {"params": params, "from": from_}
            if method == "relay":
                # A blocking RPC from a handler: the reader must keep reading to answer it.
                return {"relayed": self.rpc("other", "get", {"q": params})}
            if method == "kernel":
                return {"kernel": self.call("config.get", {"key": "tiny.x"})}
            if method == "timeout":
                try:
                    self.rpc("slow", "x", timeout=0.2)
                except pons_sdk.PonsTimeout as err:
                    return {"timeout": str(err)}
            if method == "section":
                return self.section
            if method == "none":
                return None
            if method == "slow":
                time.sleep(0.3)
                return "done"
            raise pons_sdk.PonsError("no such method: %%s" %% method)

        def on_config_update(self, changed):
            if "explode" in changed:
                raise RuntimeError("cannot apply")
            self.log("info", "config", changed=changed, section=self.section)

        def on_shutdown(self):
            self.log("info", "bye")

    if __name__ == "__main__":
        Tiny({"id": "tiny", "name": "Tiny", "configKey": "tiny"}).run()
    """
)


class Harness:
    """A module subprocess with a thread that queues every stdout line (parsed)."""

    def __init__(self, source: str) -> None:
        self.dir = tempfile.TemporaryDirectory()
        script = Path(self.dir.name) / "main.py"
        script.write_text(source, encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._start_pumps()

    def _start_pumps(self) -> None:
        self.lines: "queue.Queue[Optional[Dict[str, Any]]]" = queue.Queue()
        self.raw: List[bytes] = []
        self.stderr = b""
        self._err_done = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.raw.append(raw)
            try:
                self.lines.put(json.loads(raw))
            except ValueError:
                self.lines.put({"type": "<not json>", "line": raw.decode(errors="replace")})
        self.lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()
        self._err_done.set()

    def send(self, message: Any) -> None:
        self.send_raw(json.dumps(message).encode() + b"\n")

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def expect(self, predicate: Callable[[Dict[str, Any]], bool], what: str) -> Dict[str, Any]:
        """Returns the first message matching `predicate`, skipping others, within DEADLINE."""
        end = time.monotonic() + DEADLINE
        seen = []
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for %s; saw %r" % (what, seen))
            try:
                message = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if message is None:
                raise AssertionError("stdout closed waiting for %s; saw %r; stderr %r"
                                     % (what, seen, self.stderr))
            if predicate(message):
                return message
            seen.append(message)

    def expect_type(self, kind: str, **fields: Any) -> Dict[str, Any]:
        return self.expect(
            lambda m: m.get("type") == kind and all(m.get(k) == v for k, v in fields.items()),
            "%s %r" % (kind, fields))

    def wait_exit(self) -> int:
        code = self.proc.wait(timeout=DEADLINE)
        self._err_done.wait(DEADLINE)  # stderr fully read once the process is gone
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        self.dir.cleanup()


class ModuleProtocolTest(unittest.TestCase):
    def setUp(self) -> None:
        self.h = Harness(MODULE_SOURCE % {"sdk_dir": str(SRC)})
        self.addCleanup(self.h.close)

    def init(self, config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        self.h.send({"type": "init", "protocolVersion": "1.0",
                     "config": config if config is not None else {"tiny": {"x": 1}},
                     "workspacePath": "/tmp/home", "projectRoot": "/tmp/home"})
        return self.h.expect_type("ready")

    def test_full_session(self) -> None:
        h = self.h
        h.send({"type": "install"})
        h.expect_type("log", msg="installed")
        ready = self.init()
        self.assertEqual(ready["manifest"]["id"], "tiny")
        h.send({"type": "deps_ready"})
        up = h.expect_type("publish", topic="tiny:up")
        self.assertEqual(up["payload"], {"ok": True})
        h.send({"type": "rpc_request", "id": "k-1", "from": "caller", "service": "tiny",
                "method": "echo", "params": {"a": 1}})
        answer = h.expect_type("rpc_response", id="k-1")
        self.assertEqual(answer["result"], {"params": {"a": 1}, "from": "caller"})
        self.assertNotIn("error", answer)
        h.send({"type": "shutdown"})
        h.expect_type("log", msg="bye")
        self.assertEqual(h.wait_exit(), 0)
        for raw in h.raw:  # compact JSON, one message per line, no stray output
            self.assertTrue(raw.endswith(b"\n"))
            self.assertEqual(raw, json.dumps(json.loads(raw), separators=(",", ":"),
                                             ensure_ascii=False).encode() + b"\n")

    def test_ping_deliver_ack_nack_and_errors(self) -> None:
        h = self.h
        self.init()
        h.send({"type": "ping"})
        h.expect_type("pong")
        h.send({"type": "deliver", "id": "d1", "topic": "tiny:in", "payload": [1, 2]})
        h.expect_type("ack", id="d1")
        h.send({"type": "deliver", "id": "d2", "topic": "tiny:bad", "payload": None})
        nack = h.expect_type("nack", id="d2")
        self.assertEqual(nack["error"], "bad payload")
        h.send({"type": "rpc_request", "id": "k-2", "from": "c", "service": "tiny",
                "method": "nope"})
        self.assertEqual(h.expect_type("rpc_response", id="k-2")["error"],
                         "no such method: nope")
        h.send({"type": "rpc_request", "id": "k-3", "from": "c", "service": "tiny",
                "method": "none"})
        self.assertNotIn("result", h.expect_type("rpc_response", id="k-3"))

    def test_kernel_call_to_module(self) -> None:
        h = self.h
        self.init()
        h.send({"type": "call", "id": "c-1", "method": "echo", "params": 7})
        answer = h.expect_type("call:response", id="c-1")
        self.assertEqual(answer["result"], {"params": 7, "from": None})

    def test_rpc_from_handler_is_answered_by_reader(self) -> None:
        h = self.h
        self.init()
        h.send({"type": "rpc_request", "id": "k-4", "from": "c", "service": "tiny",
                "method": "relay", "params": "q1"})
        outgoing = h.expect_type("rpc_request", service="other", method="get")
        self.assertEqual(outgoing["params"], {"q": "q1"})
        self.assertEqual(len(outgoing["id"]), 36)  # uuid4
        h.send({"type": "ping"})  # the reader is not blocked by the waiting handler
        h.expect_type("pong")
        h.send({"type": "rpc_response", "id": "unknown-id", "result": 0})  # ignored
        h.send({"type": "rpc_response", "id": outgoing["id"], "result": {"v": 42}})
        answer = h.expect_type("rpc_response", id="k-4")
        self.assertEqual(answer["result"], {"relayed": {"v": 42}})

    def test_module_to_kernel_call_and_error(self) -> None:
        h = self.h
        self.init()
        h.send({"type": "rpc_request", "id": "k-5", "from": "c", "service": "tiny",
                "method": "kernel"})
        outgoing = h.expect_type("call", method="config.get")
        self.assertEqual(outgoing["params"], {"key": "tiny.x"})
        h.send({"type": "call:response", "id": outgoing["id"],
                "error": "Error: Unknown kernel method: config.get"})
        answer = h.expect_type("rpc_response", id="k-5")
        self.assertEqual(answer["error"], "Error: Unknown kernel method: config.get")

    def test_rpc_timeout(self) -> None:
        h = self.h
        self.init()
        h.send({"type": "rpc_request", "id": "k-6", "from": "c", "service": "tiny",
                "method": "timeout"})
        answer = h.expect_type("rpc_response", id="k-6")
        self.assertEqual(answer["result"], {"timeout": "RPC slow.x timed out"})

    def test_config_update_and_rollback(self) -> None:
        h = self.h
        self.init({"tiny": {"x": 1}})
        h.send({"type": "config:update", "config": {"tiny": {"x": 2}},
                "changedSections": ["tiny"]})
        log = h.expect_type("log", msg="config")
        self.assertEqual(log["data"], {"changed": ["tiny"], "section": {"x": 2}})
        h.send({"type": "config:update", "config": {"tiny": {"x": 3}},
                "changedSections": ["explode"]})
        h.expect(lambda m: m.get("type") == "log" and m.get("level") == "error",
                 "rollback error log")
        h.send({"type": "rpc_request", "id": "k-7", "from": "c", "service": "tiny",
                "method": "section"})
        self.assertEqual(h.expect_type("rpc_response", id="k-7")["result"], {"x": 2})

    def test_malformed_lines_and_duplicate_init(self) -> None:
        h = self.h
        h.send_raw(b"not json\n\n   \n[1,2]\n\xff\xfe\n")
        self.init()
        h.send({"type": "init", "config": {}})  # ignored: no second ready
        h.send({"type": "what-is-this"})
        h.send({"type": "ping"})
        h.expect_type("pong")
        self.assertEqual(sum(1 for raw in h.raw if b'"ready"' in raw), 1)
        h.send({"type": "shutdown"})
        self.assertEqual(h.wait_exit(), 0)
        self.assertIn(b"Malformed JSON on stdin", h.stderr)
        self.assertIn(b"stray print must not reach stdout", h.stderr)

    def test_service_available(self) -> None:
        h = self.h
        self.init()
        h.send({"type": "service_available", "service": "http-router"})
        log = h.expect_type("log", msg="service")
        self.assertEqual(log["data"], {"service": "http-router"})

    def test_stdin_close_exits_zero(self) -> None:
        h = self.h
        self.init()
        assert h.proc.stdin is not None
        h.proc.stdin.close()
        h.expect_type("log", msg="bye")
        self.assertEqual(h.wait_exit(), 0)

    def test_init_failure_exits_one(self) -> None:
        h = self.h
        h.send({"type": "init", "config": {"tiny": {"fail": True}}})
        nack = h.expect_type("nack", id="init")
        self.assertEqual(nack["error"], "bad config")
        self.assertEqual(h.wait_exit(), 1)

    def test_shutdown_lets_running_handlers_answer(self) -> None:
        h = self.h
        self.init()
        h.send({"type": "rpc_request", "id": "k-8", "from": "c", "service": "tiny",
                "method": "slow"})
        h.send({"type": "shutdown"})
        self.assertEqual(h.expect_type("rpc_response", id="k-8")["result"], "done")
        self.assertEqual(h.wait_exit(), 0)

    def test_sigterm_runs_shutdown(self) -> None:
        h = self.h
        self.init()
        h.proc.terminate()
        h.expect_type("log", msg="bye")
        self.assertEqual(h.wait_exit(), 0)


SLOW_INIT_SOURCE = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, %(sdk_dir)r)
    import pons_sdk

    class SlowInit(pons_sdk.Module):
        max_workers = 1  # handlers run one at a time: the order of answers is the order of dispatch

        def on_init(self, config):
            time.sleep(0.5)
            self.greeting = "Hi"  # handlers read it; before init finished it would be missing

        def on_message(self, topic, payload):
            self.log("info", "seen", greeting=self.greeting)

        def on_request(self, method, params, from_):
            return {"greeting": self.greeting, "method": method}

    if __name__ == "__main__":
        SlowInit({"id": "slow", "name": "Slow"}).run()
    """
)


class InitGateTest(unittest.TestCase):
    """Requests, calls and deliveries that arrive while `on_init` runs wait until it returned,
    then are dispatched in their order of arrival (after `ready`)."""

    def test_messages_during_init_wait_for_it(self) -> None:
        h = Harness(SLOW_INIT_SOURCE % {"sdk_dir": str(SRC)})
        self.addCleanup(h.close)
        h.send({"type": "init", "protocolVersion": "1.0", "config": {},
                "workspacePath": "/tmp/home", "projectRoot": "/tmp/home"})
        h.send({"type": "rpc_request", "id": "k-1", "from": "c", "service": "slow",
                "method": "first"})
        h.send({"type": "deliver", "id": "d-1", "topic": "t", "payload": 1})
        h.send({"type": "call", "id": "c-1", "method": "second"})
        h.send({"type": "rpc_request", "id": "k-2", "from": "c", "service": "slow",
                "method": "third"})
        h.expect_type("rpc_response", id="k-2")
        kinds = [(m.get("type"), m.get("id")) for m in
                 (json.loads(raw) for raw in h.raw) if m.get("type") != "log"]
        self.assertEqual(kinds, [("ready", None), ("rpc_response", "k-1"), ("ack", "d-1"),
                                 ("call:response", "c-1"), ("rpc_response", "k-2")])
        answers = [json.loads(raw) for raw in h.raw]
        for answer in answers:
            self.assertNotIn("error", answer, answers)
        results = [a["result"] for a in answers if "result" in a]
        self.assertEqual(results, [{"greeting": "Hi", "method": "first"},
                                   {"greeting": "Hi", "method": "second"},
                                   {"greeting": "Hi", "method": "third"}])
        seen = [a for a in answers if a.get("type") == "log" and a.get("msg") == "seen"]
        self.assertEqual([a["data"] for a in seen], [{"greeting": "Hi"}])


    def test_shutdown_during_init_still_answers_held_requests(self) -> None:
        """A request held while `on_init` runs is answered even when `shutdown` comes before
        `on_init` returned: it counts as in flight from its arrival."""
        h = Harness(SLOW_INIT_SOURCE % {"sdk_dir": str(SRC)})
        self.addCleanup(h.close)
        h.send({"type": "init", "protocolVersion": "1.0", "config": {}})
        h.send({"type": "rpc_request", "id": "k-1", "from": "c", "service": "slow",
                "method": "held"})
        h.send({"type": "shutdown"})
        h.expect_type("ready")
        answer = h.expect_type("rpc_response", id="k-1")
        self.assertEqual(answer["result"], {"greeting": "Hi", "method": "held"})
        self.assertEqual(h.wait_exit(), 0)

if __name__ == "__main__":
    unittest.main()
