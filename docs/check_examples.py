#!/usr/bin/env python3
"""Runs the examples of README.md and docs/*.md that are marked runnable, as
written, so that they cannot rot. CI runs it after the release build and the
Python venv exist:

    python3 docs/check_examples.py --venv .venv-ci

A fenced ```sh or ```python block preceded by the line `<!-- run -->` is run
from the repository's top folder: sh blocks with `bash -e` (background jobs
are waited for), python blocks with the venv's python. `<!-- run: CMD -->`
starts the shell command CMD in the background first (say, the producer a
Python consumer reads) and waits for it after the block. `.venv/` in a block
means the venv given by --venv. Each block has a time limit; any failure
fails the run, naming the file and line.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = re.compile(r"^<!-- run(?::\s*(.*?))?\s*-->$")
FENCE = re.compile(r"^```(\w+)")
LIMIT = 180


def blocks(path):
    """(line, language, setup, code) of each marked block of `path`."""
    lines = path.read_text().split("\n")
    i = 0
    while i < len(lines):
        m = MARK.match(lines[i].strip())
        if m and i + 1 < len(lines) and FENCE.match(lines[i + 1]):
            lang = FENCE.match(lines[i + 1]).group(1)
            end = i + 2
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            yield i + 2, lang, m.group(1), "\n".join(lines[i + 2:end]) + "\n"
            i = end
        i += 1


def run(where, lang, setup, code, venv):
    code = code.replace(".venv/", f"{venv}/")
    env = dict(os.environ)
    background = None
    if setup:
        background = subprocess.Popen(["bash", "-c", setup.replace(".venv/", f"{venv}/")],
                                      cwd=ROOT, env=env)
    try:
        if lang == "sh":
            cmd = ["bash", "-e", "-o", "pipefail", "-c", code + "\nwait\n"]
        elif lang == "python":
            f = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
            f.write(code)
            f.close()
            cmd = [f"{venv}/bin/python", f.name]
        else:
            raise SystemExit(f"{where}: cannot run a {lang} block")
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=LIMIT)
        if out.returncode != 0:
            print(f"FAILED {where} (exit {out.returncode})\n--- stdout\n{out.stdout[-3000:]}"
                  f"\n--- stderr\n{out.stderr[-3000:]}")
            return False
        if background is not None and background.wait(timeout=LIMIT) != 0:
            print(f"FAILED {where}: the setup command exited {background.returncode}")
            return False
        return True
    except subprocess.TimeoutExpired:
        print(f"FAILED {where}: still running after {LIMIT} s")
        return False
    finally:
        if background is not None and background.poll() is None:
            background.kill()
            background.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", default=".venv", help="the venv with framering installed")
    args = ap.parse_args()
    venv = str((ROOT / args.venv).resolve())
    files = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
    passed = failed = 0
    for path in files:
        for line, lang, setup, code in blocks(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if run(where, lang, setup, code, venv):
                print(f"ok {where}")
                passed += 1
            else:
                failed += 1
    print(f"{passed} passed, {failed} failed")
    if passed == 0:
        print("no runnable example found")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
