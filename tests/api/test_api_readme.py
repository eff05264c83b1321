"""The README's Python API example runs as written and prints what the README says, under
the `python3` found on PATH (a pyenv or venv interpreter without python3-seccomp, when
there is one: the API must work from any Python 3.11+)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from pvtest import REPO


def _blocks() -> tuple[str, str]:
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- api-example[^>]*-->\n```python\n(.*?)```\n\nOutput:\n\n```\n(.*?)```",
                  text, re.S)
    assert m, "README.md lost its api-example block"
    return m.group(1), m.group(2)


def _interpreter() -> str:
    """python3 from PATH if it is another interpreter of 3.11 or later, else this one."""
    cand = shutil.which("python3")
    if cand and os.path.realpath(cand) != os.path.realpath(sys.executable):
        ok = subprocess.run([cand, "-c", "import sys; assert sys.version_info >= (3, 11)"],
                            capture_output=True)
        if ok.returncode == 0:
            return cand
    return sys.executable


def test_readme_example_runs() -> None:
    code, expected = _blocks()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([_interpreter(), "-c", code], capture_output=True, text=True,
                       env=env, timeout=600, cwd="/")
    assert p.returncode == 0, p.stderr
    assert p.stdout == expected, p.stderr
