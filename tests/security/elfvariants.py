"""Malformed executables for test_malformed.py: random byte flips in the
first 256 bytes of /bin/true (fixed seeds), and hand-made breakages of its
headers, its program headers, its PT_INTERP, of a static non-PIE binary
(segments and entry point at the Sentry's stub page, in the kernel half),
and of #! scripts."""

from __future__ import annotations

import random
import struct
from pathlib import Path

EHDR_PHOFF, EHDR_ENTRY, EHDR_PHENTSIZE, EHDR_PHNUM = 0x20, 0x18, 0x36, 0x38
PHDR = struct.Struct("<IIQQQQQQ")
PT_LOAD, PT_INTERP = 1, 3

FLIPS = 50
SEED = 20240601


def _phdrs(b: bytes) -> list[tuple[int, list[int]]]:
    """(offset, fields) of each program header."""
    phoff = struct.unpack_from("<Q", b, EHDR_PHOFF)[0]
    phnum = struct.unpack_from("<H", b, EHDR_PHNUM)[0]
    out = []
    for i in range(phnum):
        off = phoff + i * PHDR.size
        out.append((off, list(PHDR.unpack_from(b, off))))
    return out


def _set_phdr(b: bytearray, off: int, fields: list[int]) -> None:
    PHDR.pack_into(b, off, *fields)


def _first(b: bytes, ptype: int) -> tuple[int, list[int]]:
    for off, f in _phdrs(b):
        if f[0] == ptype:
            return off, f
    raise ValueError(f"no program header of type {ptype}")


def _interp(b: bytes, path: bytes, terminate: bool = True) -> bytearray:
    """PT_INTERP pointed at `path` (written over the old string, which must be
    at least as long)."""
    out = bytearray(b)
    off, f = _first(out, PT_INTERP)
    old_len = f[5]
    assert len(path) + 1 <= old_len, path
    new = path + (b"\0" if terminate else b"X") * (old_len - len(path))
    out[f[2]:f[2] + old_len] = new
    return out


def make_variants(outdir: Path, static_elf: Path, stub_start: int, syscall_addr: int) -> list[str]:
    """Writes every variant into outdir (mode 0755); returns their names."""
    true = Path("/bin/true").read_bytes()
    static = static_elf.read_bytes()
    variants: dict[str, bytes] = {}

    for i in range(FLIPS):
        rng = random.Random(SEED + i)
        b = bytearray(true)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(256)] ^= rng.randrange(1, 256)
        variants[f"flip-{i:02d}"] = bytes(b)

    def edit(src: bytes, fn) -> bytes:
        b = bytearray(src)
        fn(b)
        return bytes(b)

    def with_load(src: bytes, **changes: int) -> bytes:
        b = bytearray(src)
        off, f = _first(b, PT_LOAD)
        names = ["type", "flags", "offset", "vaddr", "paddr", "filesz", "memsz", "align"]
        for k, v in changes.items():
            f[names.index(k)] = v
        _set_phdr(b, off, f)
        return bytes(b)

    _, load = _first(true, PT_LOAD)
    _, interp = _first(true, PT_INTERP)
    variants.update({
        "hdr-phnum-ffff": edit(true, lambda b: struct.pack_into("<H", b, EHDR_PHNUM, 0xFFFF)),
        "hdr-phnum-5000": edit(true, lambda b: struct.pack_into("<H", b, EHDR_PHNUM, 5000)),
        "hdr-phoff-beyond": edit(true, lambda b: struct.pack_into("<Q", b, EHDR_PHOFF,
                                                                 0x7FFFFFFF)),
        "hdr-phoff-wrap": edit(true, lambda b: struct.pack_into("<Q", b, EHDR_PHOFF,
                                                               (1 << 64) - 8)),
        "hdr-phentsize-0": edit(true, lambda b: struct.pack_into("<H", b, EHDR_PHENTSIZE, 0)),
        "hdr-class32": edit(true, lambda b: b.__setitem__(4, 1)),
        "hdr-machine-386": edit(true, lambda b: struct.pack_into("<H", b, 0x12, 3)),
        "hdr-type-core": edit(true, lambda b: struct.pack_into("<H", b, 0x10, 4)),
        "hdr-entry-zero": edit(true, lambda b: struct.pack_into("<Q", b, EHDR_ENTRY, 0)),
        "file-truncated-100": true[:100],
        "file-truncated-1000": true[:1000],
        "file-empty": b"",
        "file-magic-only": b"\x7fELF",
        "interp-missing": bytes(_interp(true, b"/nonexistent/ld.so")),
        "interp-true": bytes(_interp(true, b"/bin/true")),
        "interp-self-exe": bytes(_interp(true, b"/proc/self/exe")),
        "interp-empty": bytes(_interp(true, b"")),
        "interp-unterminated": bytes(_interp(true, b"/lib64/ld-linux-x86-64.so",
                                             terminate=False)),
        "interp-dev-zero": bytes(_interp(true, b"/dev/zero")),
        "interp-huge-filesz": edit(true, lambda b: _set_phdr(
            b, _first(b, PT_INTERP)[0], [*interp[:5], 0x7FFFFFFF, *interp[6:]])),
        "interp-offset-beyond": edit(true, lambda b: _set_phdr(
            b, _first(b, PT_INTERP)[0], [*interp[:2], 0x7FFFFFFF0, *interp[3:]])),
        "load-filesz-gt-memsz": with_load(true, filesz=load[6] + 0x100000),
        "load-offset-beyond": with_load(true, offset=0x7FFFF000),
        "load-huge-memsz": with_load(true, memsz=1 << 46),
        "load-misaligned": with_load(true, vaddr=load[3] + 0x123),
        "load-align-3": with_load(true, align=3),
        # Errors past exec's point of no return (a SIGSEGV, not an errno, in Linux).
        "load-vaddr-near-2p64": with_load(true, vaddr=0xFFFFFFFFFFFFF000 - load[6]),
        "load-memsz-2p64": with_load(true, memsz=(1 << 64) - 1),
        "load-anon-only-odd-offset": with_load(true, filesz=0, offset=0x123),
        "load-offset-below-vaddr-page": with_load(true, offset=0, vaddr=load[3] + 0x800),
        "load-none": edit(true, lambda b: [_set_phdr(b, o, [4, *f[1:]])
                                          for o, f in _phdrs(b) if f[0] == PT_LOAD]),
        "interp-trailing-garbage": edit(true, lambda b: b.__setitem__(
            slice(interp[2] + 1, interp[2] + 2), b"\0")),
        "interp-short-file": bytes(_interp(true, b"/etc/hostname")),
        "static-load-at-stub": with_load(static, vaddr=stub_start, paddr=stub_start),
        "static-load-over-stub": with_load(static, vaddr=stub_start - 0x1000,
                                           paddr=stub_start - 0x1000, memsz=0x3000),
        "static-load-kernel": with_load(static, vaddr=0xFFFF800000000000,
                                        paddr=0xFFFF800000000000),
        "static-load-zero": with_load(static, vaddr=0, paddr=0),
        "static-entry-stub": edit(static, lambda b: struct.pack_into("<Q", b, EHDR_ENTRY,
                                                                    syscall_addr)),
        "static-entry-kernel": edit(static, lambda b: struct.pack_into(
            "<Q", b, EHDR_ENTRY, 0xFFFF800000001000)),
        "static-entry-vsyscall": edit(static, lambda b: struct.pack_into(
            "<Q", b, EHDR_ENTRY, 0xFFFFFFFFFF600400)),
        "script-long-interp": b"#!/" + b"a" * 300 + b"\n",
        "script-no-interp": b"#!\n",
        "script-interp-missing": b"#!/nonexistent/interpreter\n",
        "script-interp-dir": b"#!/tmp\n",
    })
    # A script that runs itself, and a pair that run each other: ELOOP.
    variants["script-self"] = b"#!" + str(outdir / "script-self").encode() + b"\n"
    variants["script-pair-a"] = b"#!" + str(outdir / "script-pair-b").encode() + b"\n"
    variants["script-pair-b"] = b"#!" + str(outdir / "script-pair-a").encode() + b"\n"

    outdir.mkdir(parents=True, exist_ok=True)
    outdir.chmod(0o755)
    for name, data in variants.items():
        p = outdir / name
        p.write_bytes(data)
        p.chmod(0o755)
    return sorted(variants)
