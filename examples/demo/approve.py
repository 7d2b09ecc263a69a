#!/usr/bin/env python3
"""Rewrites examples/demo/permissions.yaml so that every module under modules/ is approved.

Each module gets the compat layout (specs/files.md): `base` with all six permission
keys from its module.json, `baseManifestHash` = SHA-256 (lowercase hex) of module.json's bytes,
`baseGrantedAt`, empty `dynamic`/`pending`/`denied`, and `capabilities` (the manifest's, else
topics = subscribes + publishes, services = requires + optionalRequires); `serviceProviders` maps
each provided service to its module. Timestamps of modules already in the file are kept, so
running it twice changes nothing.

    python3 examples/demo/approve.py            rewrite permissions.yaml after editing a manifest
    python3 examples/demo/approve.py --check    exit 1 if permissions.yaml is out of date

This is a demo convenience for a home kept in git; a real home uses `pons modules approve <id>`.
"""

import datetime
import hashlib
import json
import os
import re
import sys
from pathlib import Path

HOME = Path(__file__).resolve().parent
PERMISSION_KEYS = ("net", "read", "write", "env", "run", "sys")
PLAIN = re.compile(r"^[A-Za-z0-9_-]+$")


def quote(value):
    """A YAML scalar: plain for simple words, JSON (= YAML double-quoted) otherwise."""
    return value if PLAIN.match(value) and not value.isdigit() else json.dumps(value)


def seq(values, indent):
    if not values:
        return " []\n"
    return "\n" + "".join("%s- %s\n" % (" " * indent, quote(v)) for v in values)


def unique(values):
    seen = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def existing_timestamps(text):
    """Module id -> baseGrantedAt from a permissions.yaml this script wrote."""
    stamps, current = {}, None
    for line in text.splitlines():
        match = re.match(r"^  ([^ #][^:]*):\s*$", line)
        if match:
            current = json.loads(match.group(1)) if match.group(1).startswith('"') else match.group(1)
            continue
        match = re.match(r'^    baseGrantedAt: "?([^"]+)"?\s*$', line)
        if match and current is not None:
            stamps[current] = match.group(1)
    return stamps


def render(home, stamps, now):
    out = ["# Written by approve.py: every demo module approved. Re-run it after editing a\n",
           "# module.json (the hash of module.json's bytes must match), or use `pons modules approve`.\n",
           "modules:\n"]
    providers = {}
    for manifest_path in sorted(home.glob("modules/*/module.json")):
        raw = manifest_path.read_bytes()
        manifest = json.loads(raw.decode("utf-8-sig"))
        module_id = manifest["id"]
        perms = manifest.get("permissions") or {}
        caps = manifest.get("capabilities") or {
            "topics": unique(manifest.get("subscribes", []) + manifest.get("publishes", [])),
            "services": unique(manifest.get("requires", []) + manifest.get("optionalRequires", [])),
        }
        digest = hashlib.sha256(raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw).hexdigest()
        out.append("  %s:\n" % quote(module_id))
        out.append("    base:\n")
        for key in PERMISSION_KEYS:
            out.append("      %s:%s" % (key, seq(perms.get(key, []), 8)))
        out.append('    baseManifestHash: "%s"\n' % digest)
        out.append('    baseGrantedAt: "%s"\n' % stamps.get(module_id, now))
        out.append("    dynamic: []\n    pending: []\n    denied: []\n")
        out.append("    capabilities:\n")
        out.append("      topics:%s" % seq(caps.get("topics", []), 8))
        out.append("      services:%s" % seq(caps.get("services", []), 8))
        # Recorded as already spawned once, so running the demo leaves this file unchanged
        # (the kernel writes firstSpawnAt after sending `install` on a first spawn).
        out.append('    firstSpawnAt: "%s"\n' % stamps.get(module_id, now))
        for service in manifest.get("provides", []):
            providers.setdefault(service, module_id)
    out.append("serviceProviders:%s" % ("\n" if providers else " {}\n"))
    for service, module_id in sorted(providers.items()):
        out.append("  %s: %s\n" % (quote(service), quote(module_id)))
    return "".join(out)


def main(argv):
    target = HOME / "permissions.yaml"
    current = target.read_text(encoding="utf-8") if target.exists() else ""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    wanted = render(HOME, existing_timestamps(current), now)
    if "--check" in argv:
        if wanted != current:
            sys.stderr.write("%s is out of date: run `python3 %s`.\n" % (target, Path(__file__)))
            return 1
        print("%s is up to date." % target)
        return 0
    if wanted == current:
        print("%s is already up to date." % target)
        return 0
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(wanted)
    os.replace(str(tmp), str(target))
    print("wrote %s" % target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
