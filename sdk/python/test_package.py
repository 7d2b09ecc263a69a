"""Tests of sdk/python as an installable package: pyproject.toml names the package in src/, the
version has one source, and `pip install --no-build-isolation --no-index` installs it offline
with the interpreter's own setuptools (into a temporary --target, from a copy of sdk/python, so
neither the interpreter nor the repository is touched).

Run: python3 -m unittest discover -s sdk/python
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest
from pathlib import Path
from typing import List, Optional

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
PACKAGE = SRC / "pons_sdk"

# Builds the wheel with the interpreter's setuptools: >= 61 reads [project]; bdist_wheel comes with
# setuptools since 70.1 and from the `wheel` package before.
CAN_BUILD = (
    "import setuptools, pip\n"
    "major, minor = (int(x) for x in setuptools.__version__.split('.')[:2])\n"
    "assert (major, minor) >= (61, 0), setuptools.__version__\n"
    "if (major, minor) < (70, 1):\n"
    "    import wheel\n"
)


def builders() -> List[str]:
    """Interpreters that could build the package offline: this one first, then the system's."""
    out: List[str] = []
    for exe in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(exe) and exe not in out:
            out.append(exe)
    return out


def find_builder() -> Optional[str]:
    for exe in builders():
        done = subprocess.run([exe, "-c", CAN_BUILD], capture_output=True, timeout=60)
        if done.returncode == 0:
            return exe
    return None


class PackageLayoutTest(unittest.TestCase):
    def test_pyproject_names_the_src_package_and_reads_the_version_from_it(self) -> None:
        text = (HERE / "pyproject.toml").read_text(encoding="utf-8")
        try:
            import tomllib  # Python >= 3.11
        except ImportError:
            self.skipTest("tomllib needs Python 3.11")
        data = tomllib.loads(text)
        self.assertEqual(data["build-system"]["build-backend"], "setuptools.build_meta")
        self.assertEqual(data["project"]["name"], "pons-sdk")
        self.assertEqual(data["project"]["dynamic"], ["version"])
        self.assertEqual(data["project"].get("dependencies", []), [])
        tool = data["tool"]["setuptools"]
        self.assertEqual(tool["package-dir"], {"": "src"})
        self.assertEqual(tool["packages"], ["pons_sdk"])
        self.assertEqual(tool["dynamic"]["version"], {"attr": "pons_sdk.__version__"})

    def test_the_package_is_one_module_file_and_a_typing_marker(self) -> None:
        names = sorted(p.name for p in PACKAGE.iterdir() if p.name != "__pycache__")
        self.assertEqual(names, ["__init__.py", "py.typed"])
        source = (PACKAGE / "__init__.py").read_text(encoding="utf-8")
        self.assertRegex(source, r'\n__version__ = "\d+\.\d+\.\d+"\n')
        # Standard library only: nothing to install besides the package itself.
        imports = set(re.findall(r"^(?:from|import) ([a-z_]+)", source, re.M))
        self.assertIn("json", imports)
        stdlib = getattr(sys, "stdlib_module_names", None)  # Python >= 3.10
        if stdlib is not None:
            self.assertEqual(sorted(imports - set(stdlib)), [])


class PipInstallTest(unittest.TestCase):
    def test_pip_installs_it_offline_and_a_module_imports_it(self) -> None:
        exe = find_builder()
        if exe is None:
            self.skipTest("no interpreter here has pip and setuptools >= 61 (with `wheel` before "
                          "70.1) to build the package offline; tried: %s" % ", ".join(builders()))
        with tempfile.TemporaryDirectory() as tmp:
            # pip builds in the source tree (build/, *.egg-info): build a copy.
            source = Path(tmp) / "python"
            shutil.copytree(HERE, source, ignore=shutil.ignore_patterns(
                "__pycache__", "build", "*.egg-info", "test_*.py"))
            target = Path(tmp) / "site"
            env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
                       PYTHONDONTWRITEBYTECODE="1")
            done = subprocess.run(
                [exe, "-m", "pip", "install", "--no-build-isolation", "--no-index",
                 "--no-deps", "--target", str(target), str(source)],
                capture_output=True, text=True, timeout=300, env=env)
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            installed = target / "pons_sdk"
            self.assertEqual((installed / "__init__.py").read_bytes(),
                             (PACKAGE / "__init__.py").read_bytes())
            self.assertTrue((installed / "py.typed").is_file())
            version = re.search(r'\n__version__ = "([^"]+)"',
                                (PACKAGE / "__init__.py").read_text(encoding="utf-8")).group(1)
            self.assertTrue((target / ("pons_sdk-%s.dist-info" % version)).is_dir(),
                            sorted(p.name for p in target.iterdir()))
            # A module that imports the installed package (not src/) answers init with ready.
            module = Path(tmp) / "module.py"
            module.write_text(
                "import pons_sdk\n"
                "pons_sdk.Module({'id': 'm', 'name': 'M'}).run()\n", encoding="utf-8")
            probe = subprocess.run(
                [exe, "-c", "import pons_sdk; print(pons_sdk.__file__, pons_sdk.__version__)"],
                capture_output=True, text=True, timeout=60, cwd=tmp,
                env=dict(env, PYTHONPATH=str(target)))
            self.assertEqual(probe.returncode, 0, probe.stderr)
            path, got = probe.stdout.split()
            self.assertEqual(Path(path).resolve(), (installed / "__init__.py").resolve())
            self.assertEqual(got, version)
            proc = subprocess.Popen([exe, str(module)], cwd=tmp, env=dict(env, PYTHONPATH=str(target)),
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            lines: "queue.Queue[bytes]" = queue.Queue()
            threading.Thread(target=lambda: [lines.put(raw) for raw in proc.stdout],
                             daemon=True).start()
            try:
                proc.stdin.write(json.dumps({"type": "init", "protocolVersion": "1.0",
                                             "config": {}}).encode() + b"\n")
                proc.stdin.flush()
                first = json.loads(lines.get(timeout=30))
                self.assertEqual(first["type"], "ready", first)
                self.assertEqual(first["manifest"]["id"], "m")
                proc.stdin.write(b'{"type":"shutdown"}\n')
                proc.stdin.flush()
                self.assertEqual(proc.wait(timeout=30), 0)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                for pipe in (proc.stdin, proc.stdout, proc.stderr):
                    pipe.close()

if __name__ == "__main__":
    unittest.main()
