"""Builds the vDSO image (vdso.c + vdso.lds) and writes image.py.

Run from the repository: `python3 -m pyvisor.sentry.vdso.build`.  The image is
checked in, so pyvisor needs no compiler at run time;
tests/sentry/test_vdso.py rebuilds it and checks the bytes are the same.
The flags keep the output reproducible: no build id, no .comment (the
compiler's version string), no absolute paths.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

CFLAGS = ["-O2", "-fPIC", "-fno-stack-protector", "-fno-builtin", "-ffreestanding",
          "-mno-sse", "-mno-mmx", "-mno-red-zone", "-fno-ident", "-g0",
          "-nostdlib", "-shared", "-Wl,-soname=linux-vdso.so.1", "-Wl,--hash-style=both",
          "-Wl,--build-id=none", "-Wl,--eh-frame-hdr", "-Wl,-Bsymbolic",
          "-Wl,-z,max-page-size=4096", "-Wl,-z,noexecstack", "-Wl,-T,vdso.lds", "-Wl,-s"]


def build(cc: str = "gcc") -> bytes:
    """Compiles the vDSO and returns the shared object's bytes."""
    with tempfile.TemporaryDirectory(prefix="pyvisor-vdso-") as tmp:
        out = os.path.join(tmp, "vdso.so")
        # Relative paths, from this directory: nothing of the build machine in the output.
        subprocess.run([cc, *CFLAGS, "-o", out, "vdso.c"], cwd=HERE, check=True)
        with open(out, "rb") as f:
            return f.read()


def render(image: bytes) -> str:
    """image.py's text."""
    lines = ['"""The vDSO image, built by build.py from vdso.c and vdso.lds.  Do not edit."""',
             "", "IMAGE = bytes.fromhex(", ]
    hexed = image.hex()
    for i in range(0, len(hexed), 96):
        lines.append(f'    "{hexed[i:i + 96]}"')
    lines.append(")")
    return "\n".join(lines) + "\n"


def main() -> int:
    text = render(build())
    with open(os.path.join(HERE, "image.py"), "w") as f:
        f.write(text)
    print("wrote image.py", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
