"""pons_sdk: the Python SDK for pons modules (one file, stdlib only, Python >= 3.9).

A pons module is a child process that speaks newline-delimited JSON with the kernel: it reads
messages on stdin and writes compact JSON + "\\n" on stdout; stderr carries free text only.
This module mimics the reference client (usepons/sdk ModuleRunner): subclass `Module`, override
the `on_*` hooks you need and call `run()`.

    import pons_sdk

    class Greeter(pons_sdk.Module):
        def on_request(self, method, params, from_):
            if method == "hello":
                return {"text": "Hello, %s!" % params.get("name", "world")}
            raise pons_sdk.PonsError("unknown method: %s" % method)

    if __name__ == "__main__":
        Greeter().run()

Threading model: one reader thread owns stdin and answers `ping`, `rpc_response` and
`call:response` itself, so it never blocks. Lifecycle hooks (install, init, deps_ready,
service_available, config:update) run in order on one lifecycle thread; deliveries and requests
run on a small thread pool. Any hook may therefore call the blocking `rpc()` / `call()`.
Deliveries and requests that arrive before `on_init` returned wait, and are dispatched in their
order of arrival once it has (after `ready`), so no handler sees a half-initialised module.
`shutdown`, SIGTERM or end of stdin run `on_shutdown()` and exit the process (0, or 1 if
`on_shutdown` raised).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional

__all__ = ["Module", "PonsError", "RpcError", "CallError", "PonsTimeout", "PROTOCOL_VERSION"]

# The package version (sdk/python/pyproject.toml reads it from here).
__version__ = "0.1.0"

PROTOCOL_VERSION = "1.0"

_MISSING = object()

# Client-side timeouts of the reference client (seconds).
DEFAULT_RPC_TIMEOUT = 30.0
DEFAULT_CALL_TIMEOUT = 10.0
# The reference client warns past this many requests in flight.
PENDING_WARN_THRESHOLD = 1000


class PonsError(Exception):
    """Base class of the errors this SDK raises."""


class RpcError(PonsError):
    """An RPC answered with an error (the kernel's or the provider's error string)."""


class CallError(PonsError):
    """A kernel call answered with an error."""


class PonsTimeout(PonsError, TimeoutError):
    """An RPC or kernel call got no answer in time."""


class _Pending:
    """One request in flight: the reader thread fills it, the caller waits on it."""

    __slots__ = ("event", "message", "error")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.message: Optional[Dict[str, Any]] = None
        self.error: Optional[BaseException] = None


def _stderr(text: str) -> None:
    try:
        sys.__stderr__.write(text.rstrip("\n") + "\n")
        sys.__stderr__.flush()
    except (OSError, ValueError, AttributeError):
        pass


def _error_text(err: BaseException) -> str:
    text = str(err)
    return text if text else type(err).__name__


class Module:
    """Base class of a pons module; override the `on_*` hooks, then call `run()`.

    Attributes available to hooks:
      manifest        the module's module.json (read next to the entry script) or the one given
      config          the `config` object of `init` / `config:update`, e.g. {"greeter": {...}}
      workspace_path  `init.workspacePath` (the pons home)
      project_root    `init.projectRoot`
      shutting_down   a threading.Event set once shutdown starts; loops can use
                      `while not self.shutting_down.wait(interval): ...`
    """

    #: Threads that run deliveries and requests concurrently.
    max_workers = 16
    #: At shutdown, how long to let deliveries and requests in progress finish (seconds).
    shutdown_drain_seconds = 2.0

    def __init__(self, manifest: Optional[Dict[str, Any]] = None) -> None:
        self.manifest: Dict[str, Any] = manifest if manifest is not None else _load_manifest()
        self.config: Dict[str, Any] = {}
        self.workspace_path: Optional[str] = None
        self.project_root: Optional[str] = None
        self.shutting_down = threading.Event()
        self._out = None  # binary stdout, taken over in run()
        self._write_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending: Dict[str, _Pending] = {}
        self._initialized = False
        # Deliveries and requests held until on_init returned (then dispatched in order).
        self._init_gate = threading.Lock()
        self._init_done = False
        self._held: List[Any] = []
        self._closed = False
        self._lifecycle: "queue.Queue[Optional[Callable[[], None]]]" = queue.Queue()
        self._pool: Optional[ThreadPoolExecutor] = None
        self._in_flight = 0
        self._in_flight_cond = threading.Condition()
        self._reader_thread: Optional[threading.Thread] = None
        self._shutdown_lock = threading.Lock()
        self._shutdown_started = False
        self._done = threading.Event()
        self._finish_lock = threading.Lock()
        self._exit_code = 0

    # ------------------------------------------------------------------ hooks (override these)

    def on_install(self) -> None:
        """First spawn after approval only, before `on_init`."""

    def on_init(self, config: Dict[str, Any]) -> None:
        """Called with the `init` config; `ready` is sent when it returns. Raising exits 1."""

    def on_deps_ready(self) -> None:
        """All required services are available; the module is active."""

    def on_service_available(self, service: str) -> None:
        """An `optionalRequires` service became available."""

    def on_message(self, topic: str, payload: Any) -> None:
        """A subscribed topic was delivered. Raising sends `nack` with the error text."""

    def on_request(self, method: str, params: Any, from_: Optional[str]) -> Any:
        """An RPC request (`from_` = caller module id) or a kernel call (`from_` = None).

        The return value is the result; raising answers with the error text.
        """
        raise PonsError("Unknown method: %s" % method)

    def on_config_update(self, changed_sections: List[str]) -> None:
        """`self.config` was replaced; raising rolls it back."""

    def on_shutdown(self) -> None:
        """The module is stopping; release resources quickly."""

    # ------------------------------------------------------------------ API

    @property
    def module_id(self) -> str:
        """The manifest id, or "module" when unknown."""
        value = self.manifest.get("id")
        return value if isinstance(value, str) and value else "module"

    @property
    def section(self) -> Dict[str, Any]:
        """This module's own config section (`config[manifest.configKey]`), or {}."""
        key = self.manifest.get("configKey")
        value = self.config.get(key) if isinstance(key, str) else None
        return value if isinstance(value, dict) else {}

    def publish(self, topic: str, payload: Any = _MISSING) -> None:
        """Publishes `payload` on `topic` (fire and forget)."""
        message: Dict[str, Any] = {"type": "publish", "topic": topic}
        if payload is not _MISSING:
            message["payload"] = payload
        self._send(message)

    def rpc(self, service: str, method: str, params: Any = _MISSING,
            timeout: float = DEFAULT_RPC_TIMEOUT) -> Any:
        """Calls `service.method` and blocks until the answer; returns its result.

        Raises RpcError on an error answer, PonsTimeout after `timeout` seconds.
        """
        message: Dict[str, Any] = {"type": "rpc_request", "id": "", "service": service,
                                   "method": method}
        if params is not _MISSING:
            message["params"] = params
        answer = self._request(message, timeout, "RPC %s.%s timed out" % (service, method))
        if answer.get("error"):
            raise RpcError(str(answer["error"]))
        return answer.get("result")

    def call(self, method: str, params: Any = _MISSING,
             timeout: float = DEFAULT_CALL_TIMEOUT) -> Any:
        """Calls a kernel method (`config.get`, `module.list`, ...) and blocks until the answer.

        Raises CallError on an error answer, PonsTimeout after `timeout` seconds.
        """
        message: Dict[str, Any] = {"type": "call", "id": "", "method": method}
        if params is not _MISSING:
            message["params"] = params
        answer = self._request(message, timeout, "Kernel call %s timed out" % method)
        if answer.get("error"):
            raise CallError(str(answer["error"]))
        return answer.get("result")

    def log(self, level: str, msg: str, **data: Any) -> None:
        """Sends a log line to the kernel (level: trace, debug, info, warn, error, fatal)."""
        message: Dict[str, Any] = {"type": "log", "level": level, "msg": msg}
        if data:
            message["data"] = data
        self._send(message)

    def run(self, exit: bool = True) -> int:
        """Speaks the protocol on stdin/stdout until shutdown or end of input.

        Exits the process with the exit code (0, or 1 if `on_init`/`on_shutdown` raised or stdout
        broke) unless `exit` is False, in which case the code is returned. While running,
        `print()` goes to stderr so it cannot corrupt the protocol stream.
        """
        self._out = sys.stdout.buffer
        sys.stdout = sys.stderr
        self._pool = ThreadPoolExecutor(max_workers=self.max_workers,
                                        thread_name_prefix="pons-worker")
        if threading.current_thread() is threading.main_thread():
            try:  # before reading anything, so SIGTERM after `ready` always runs on_shutdown
                signal.signal(signal.SIGTERM, lambda _sig, _frame: self._begin_shutdown())
            except (ValueError, OSError):
                pass
        threading.Thread(target=self._lifecycle_loop, name="pons-lifecycle", daemon=True).start()
        self._reader_thread = threading.Thread(target=self._read_loop, name="pons-reader",
                                               daemon=True)
        self._reader_thread.start()
        while not self._done.wait(0.5):
            pass
        code = self._exit_code
        if not exit:
            return code
        try:
            sys.__stderr__.flush()
        except (OSError, ValueError, AttributeError):
            pass
        # os._exit: user threads (timers, loops) must not keep a stopped module alive.
        os._exit(code)

    # ------------------------------------------------------------------ wire

    def _send(self, message: Dict[str, Any]) -> bool:
        line = json.dumps(message, separators=(",", ":"), ensure_ascii=False) + "\n"
        data = line.encode("utf-8", errors="replace")
        with self._write_lock:
            if self._closed:
                return False
            out = self._out if self._out is not None else sys.stdout.buffer
            try:
                out.write(data)
                out.flush()
                return True
            except (OSError, ValueError):
                self._closed = True
        _stderr("[sdk] stdout is closed — exiting")
        self._reject_all(PonsError("channel closed"))
        self._finish(1)
        return False

    def _request(self, message: Dict[str, Any], timeout: float, timeout_text: str) -> Dict[str, Any]:
        if threading.current_thread() is self._reader_thread:
            raise PonsError("rpc()/call() cannot be used on the reader thread")
        if self._closed:
            raise PonsError("channel closed")
        request_id = str(uuid.uuid4())
        message["id"] = request_id
        pending = _Pending()
        with self._pending_lock:
            self._pending[request_id] = pending
            count = len(self._pending)
        if count > PENDING_WARN_THRESHOLD:
            _stderr("[sdk] %d requests pending" % count)
        try:
            if not self._send(message):
                raise PonsError("channel closed")
            if not pending.event.wait(timeout):
                raise PonsTimeout(timeout_text)
        finally:
            with self._pending_lock:
                self._pending.pop(request_id, None)
        if pending.error is not None:
            raise pending.error
        return pending.message or {}

    def _settle(self, message: Dict[str, Any]) -> None:
        request_id = message.get("id")
        if not isinstance(request_id, str):
            return
        with self._pending_lock:
            pending = self._pending.pop(request_id, None)
        if pending is not None:  # unknown or late answers are dropped silently
            pending.message = message
            pending.event.set()

    def _reject_all(self, error: BaseException) -> None:
        with self._pending_lock:
            pendings = list(self._pending.values())
            self._pending.clear()
        for pending in pendings:
            pending.error = error
            pending.event.set()

    # ------------------------------------------------------------------ reader and dispatch

    def _read_loop(self) -> None:
        stdin = sys.stdin.buffer
        while True:
            try:
                raw = stdin.readline()
            except (OSError, ValueError):
                raw = b""
            if not raw:
                break
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                message = json.loads(text)
            except ValueError:
                _stderr("[sdk] Malformed JSON on stdin — skipping line")
                continue
            if not isinstance(message, dict):
                _stderr("[sdk] Message is not a JSON object — skipping line")
                continue
            try:
                self._dispatch(message)
            except Exception:  # a bad message must never kill the reader
                _stderr("[sdk] error dispatching message: %s" % traceback.format_exc())
        # End of input: nothing can answer what is pending any more.
        self._reject_all(PonsError("stdin closed"))
        self._begin_shutdown()

    def _dispatch(self, message: Dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "ping":
            self._send({"type": "pong"})
        elif kind in ("rpc_response", "call:response"):
            self._settle(message)
        elif kind == "deliver":
            self._submit_after_init(self._handle_deliver, message)
        elif kind == "rpc_request":
            self._submit_after_init(self._handle_rpc_request, message)
        elif kind == "call":
            self._submit_after_init(self._handle_call, message)
        elif kind == "init":
            if self._initialized:
                return  # a duplicate init is ignored
            self._initialized = True
            self._lifecycle.put(lambda: self._handle_init(message))
        elif kind == "install":
            self._lifecycle.put(lambda: self._guard("on_install", self.on_install))
        elif kind == "deps_ready":
            self._lifecycle.put(lambda: self._guard("on_deps_ready", self.on_deps_ready))
        elif kind == "service_available":
            service = message.get("service")
            self._lifecycle.put(
                lambda: self._guard("on_service_available", self.on_service_available, service))
        elif kind == "config:update":
            self._lifecycle.put(lambda: self._handle_config_update(message))
        elif kind == "shutdown":
            self._begin_shutdown()
        # Unknown types are ignored (the reference logs them at debug).

    def _submit_after_init(self, handler: Callable[[Dict[str, Any]], None],
                           message: Dict[str, Any]) -> None:
        """Submits now when `on_init` has returned, else holds the message until it has.

        A held message counts as in flight from the moment it arrived: a `shutdown` that comes
        while it waits (even between `ready` and the gate opening) lets it run and answer, within
        `shutdown_drain_seconds`, like a request that was already running.
        """
        with self._init_gate:
            if not self._init_done:
                with self._in_flight_cond:
                    self._in_flight += 1
                self._held.append((handler, message))
                return
        self._submit(handler, message)

    def _open_init_gate(self) -> None:
        """`on_init` returned: dispatch what was held, in order, then let the rest through."""
        with self._init_gate:
            # Submitting under the lock keeps a message that arrives meanwhile behind them.
            for handler, message in self._held:
                self._submit(handler, message, counted=True)
            self._held = []
            self._init_done = True

    def _submit(self, handler: Callable[[Dict[str, Any]], None], message: Dict[str, Any],
                counted: bool = False) -> None:
        """Runs `handler(message)` on the pool; `counted`: already counted in flight (held)."""
        if self._pool is None or (self.shutting_down.is_set() and not counted):
            if counted:
                self._handler_done()
            return
        if not counted:
            with self._in_flight_cond:
                self._in_flight += 1
        try:
            self._pool.submit(self._run_handler, handler, message)
        except RuntimeError:  # pool already shut down
            self._handler_done()

    def _run_handler(self, handler: Callable[[Dict[str, Any]], None],
                     message: Dict[str, Any]) -> None:
        try:
            handler(message)
        except Exception:
            _stderr("[sdk] handler error: %s" % traceback.format_exc())
        finally:
            self._handler_done()

    def _handler_done(self) -> None:
        with self._in_flight_cond:
            self._in_flight -= 1
            self._in_flight_cond.notify_all()

    def _lifecycle_loop(self) -> None:
        while True:
            task = self._lifecycle.get()
            if task is None:
                return
            try:
                task()
            except Exception:
                _stderr("[sdk] lifecycle error: %s" % traceback.format_exc())

    def _guard(self, name: str, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception as err:
            _stderr("[sdk] %s failed: %s" % (name, traceback.format_exc()))
            self._send({"type": "log", "level": "error", "msg": "%s failed: %s" %
                        (name, _error_text(err))})

    def _handle_init(self, message: Dict[str, Any]) -> None:
        config = message.get("config")
        self.config = config if isinstance(config, dict) else {}
        self.workspace_path = message.get("workspacePath")
        self.project_root = message.get("projectRoot")
        try:
            self.on_init(self.config)
        except Exception as err:
            _stderr("[sdk] on_init failed: %s" % traceback.format_exc())
            self._send({"type": "nack", "id": "init", "error": _error_text(err)})
            self._finish(1)
            return
        self._send({"type": "ready", "manifest": self.manifest})
        self._open_init_gate()

    def _handle_config_update(self, message: Dict[str, Any]) -> None:
        previous = self.config
        config = message.get("config")
        changed = message.get("changedSections")
        self.config = config if isinstance(config, dict) else {}
        try:
            self.on_config_update(list(changed) if isinstance(changed, list) else [])
        except Exception as err:
            self.config = previous
            _stderr("[sdk] on_config_update failed, config rolled back: %s"
                    % traceback.format_exc())
            self._send({"type": "log", "level": "error",
                        "msg": "config update failed, rolled back: %s" % _error_text(err)})

    def _handle_deliver(self, message: Dict[str, Any]) -> None:
        delivery_id = message.get("id")
        try:
            self.on_message(message.get("topic", ""), message.get("payload"))
        except Exception as err:
            self._send({"type": "nack", "id": delivery_id, "error": _error_text(err)})
            return
        self._send({"type": "ack", "id": delivery_id})

    def _handle_rpc_request(self, message: Dict[str, Any]) -> None:
        self._answer("rpc_response", message, message.get("from"))

    def _handle_call(self, message: Dict[str, Any]) -> None:
        self._answer("call:response", message, None)

    def _answer(self, kind: str, message: Dict[str, Any], from_: Optional[str]) -> None:
        answer: Dict[str, Any] = {"type": kind, "id": message.get("id")}
        try:
            result = self.on_request(message.get("method", ""), message.get("params"), from_)
        except Exception as err:
            answer["error"] = _error_text(err)
        else:
            if result is not None:
                answer["result"] = result
        self._send(answer)

    # ------------------------------------------------------------------ shutdown

    def _begin_shutdown(self) -> None:
        with self._shutdown_lock:
            if self._shutdown_started:
                return
            self._shutdown_started = True
        self.shutting_down.set()
        threading.Thread(target=self._shutdown, name="pons-shutdown", daemon=True).start()

    def _shutdown(self) -> None:
        code = 0
        try:
            self.on_shutdown()
        except Exception:
            _stderr("[sdk] on_shutdown failed: %s" % traceback.format_exc())
            code = 1
        self._reject_all(PonsError("module shutting down"))
        # Let deliveries and requests already running send their answers (bounded).
        with self._in_flight_cond:
            self._in_flight_cond.wait_for(lambda: self._in_flight == 0,
                                          timeout=self.shutdown_drain_seconds)
        self._finish(code)

    def _finish(self, code: int) -> None:
        with self._finish_lock:
            if self._done.is_set():
                return
            self._exit_code = code
            self._lifecycle.put(None)
            self._done.set()


def _load_manifest() -> Dict[str, Any]:
    """Reads module.json beside the entry script; {} when absent or unreadable."""
    script = sys.argv[0] if sys.argv and sys.argv[0] else ""
    directory = os.path.dirname(os.path.abspath(script)) if script else os.getcwd()
    try:
        with open(os.path.join(directory, "module.json"), "rb") as handle:
            value = json.loads(handle.read().decode("utf-8-sig"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
