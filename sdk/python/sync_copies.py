#!/usr/bin/env python3
"""Copies sdk/python/pons_sdk.py over every pons_sdk.py under examples/ (run after editing the
SDK; test_pons_sdk.py fails while a copy differs)."""

import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

if __name__ == "__main__":
    sdk = HERE / "pons_sdk.py"
    for copy in sorted((REPO / "examples").glob("**/pons_sdk.py")):
        if copy.read_bytes() != sdk.read_bytes():
            shutil.copyfile(sdk, copy)
            print("updated %s" % copy.relative_to(REPO))
