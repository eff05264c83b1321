"""The ELF loader: maps a program and its interpreter, builds the initial stack.

Linux: fs/binfmt_elf.c, fs/binfmt_script.c; gVisor: pkg/sentry/loader.

The binary is read through the VFS, never by the host.  Parsing is
hand-written with `struct` rather than pyelftools: it needs only the header
and program headers, must treat every field as hostile (each check below
returns ENOEXEC, never an exception), and runs on every exec, where
pyelftools' import and object cost would be paid each time.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.mman import (MAP_PRIVATE, PAGE_SIZE, PROT_EXEC, PROT_READ, PROT_WRITE,
                                    page_round_down, page_round_up)
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.mm.memory_manager import TASK_SIZE, MemoryManager

if TYPE_CHECKING:
    from pyvisor.sentry.vfs.file import FileDescription

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
PT_LOAD, PT_INTERP, PT_PHDR, PT_GNU_STACK = 1, 3, 6, 0x6474E551
ET_EXEC, ET_DYN = 2, 3
EM_X86_64 = 62
PF_X, PF_W, PF_R = 1, 2, 4

ELF_ET_DYN_BASE = 0x555555554000      # where PIE programs go (as Linux, minus randomisation)
STACK_TOP = 0x7FEFFFFFE000
STACK_SIZE = 8 << 20
MAX_ARG_STRLEN = 32 * PAGE_SIZE
MAX_ARGS_BYTES = 2 << 20               # a quarter of the 8 MiB stack, as Linux
MAX_SCRIPT_DEPTH = 4

# Auxiliary vector tags.  From <linux/auxvec.h>.
AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN, AT_SYSINFO_EHDR = 23, 25, 26, 31, 33
AT_MINSIGSTKSZ = 51


def _host_auxv() -> dict[int, int]:
    """The host's HWCAP values, reported to applications as the CPU's features."""
    try:
        raw = open("/proc/self/auxv", "rb").read()
    except OSError:
        return {}
    out = {}
    for i in range(0, len(raw) - 15, 16):
        k, v = struct.unpack_from("<QQ", raw, i)
        out[k] = v
    return out


_HOST_AUXV = _host_auxv()


@dataclass
class ElfInfo:
    """What the loader learnt about one ELF file."""

    etype: int
    entry: int
    phoff: int
    phnum: int
    phdrs: list[tuple[int, int, int, int, int, int, int, int]]
    interp: bytes | None


@dataclass
class LoadResult:
    """A loaded image: where to start and what the stack holds."""

    entry: int
    sp: int
    brk: int
    argv: list[bytes]
    envp: list[bytes]
    exe_fd: Any
    path: bytes


def read_all(fd: FileDescription, t: Any, n: int, offset: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = fd.impl.read(fd, t, n - len(out), offset + len(out))
        if not chunk:
            break
        out += chunk
    return out


def parse_elf(head: bytes, fd: FileDescription, t: Any) -> ElfInfo:
    """Validates the header and program headers.  ENOEXEC for anything off."""
    if len(head) < _EHDR.size or head[:4] != b"\x7fELF":
        raise SyscallError(Errno.ENOEXEC)
    (ident, etype, machine, _ver, entry, phoff, _shoff, _flags, ehsize, phentsize, phnum,
     _shentsize, _shnum, _shstrndx) = _EHDR.unpack_from(head)
    if ident[4] != 2 or ident[5] != 1 or machine != EM_X86_64 or etype not in (ET_EXEC, ET_DYN):
        raise SyscallError(Errno.ENOEXEC)
    if phentsize != _PHDR.size or phnum == 0 or phnum > 65536 // _PHDR.size:
        raise SyscallError(Errno.ENOEXEC)
    if phoff > 1 << 40 or entry >= 1 << 47:
        raise SyscallError(Errno.ENOEXEC)
    size = phnum * _PHDR.size
    raw = head[phoff:phoff + size] if phoff + size <= len(head) else read_all(fd, t, size, phoff)
    if len(raw) != size:
        raise SyscallError(Errno.ENOEXEC)
    phdrs = [_PHDR.unpack_from(raw, i * _PHDR.size) for i in range(phnum)]
    interp = None
    for ptype, _pflags, poff, _vaddr, _paddr, filesz, memsz, _align in phdrs:
        if ptype == PT_LOAD:
            if memsz < filesz or filesz > 1 << 40 or memsz > 1 << 40 or poff > 1 << 40 \
                    or _vaddr >= 1 << 47:
                raise SyscallError(Errno.ENOEXEC)
        if ptype == PT_INTERP:
            if filesz < 2 or filesz > 4096 or interp is not None or poff > 1 << 40:
                raise SyscallError(Errno.ENOEXEC)
            data = read_all(fd, t, filesz, poff)
            if len(data) != filesz or data[-1:] != b"\0":
                raise SyscallError(Errno.ENOEXEC)
            interp = data[:-1]
    if not any(p[0] == PT_LOAD for p in phdrs):
        raise SyscallError(Errno.ENOEXEC)
    return ElfInfo(etype, entry, phoff, phnum, phdrs, interp)


def map_elf(mm: MemoryManager, fd: FileDescription, info: ElfInfo, is_interp: bool) -> tuple[int, int, int]:
    """Maps PT_LOAD segments; returns (bias, end of image, address of the phdrs)."""
    loads = [p for p in info.phdrs if p[0] == PT_LOAD]
    lo = min(page_round_down(p[3]) for p in loads)
    hi = max(p[3] + p[6] for p in loads)
    if hi <= lo or hi - lo > 1 << 40:
        raise SyscallError(Errno.ENOEXEC)
    span = page_round_up(hi) - lo
    if info.etype == ET_DYN:
        if not is_interp and mm.is_free(ELF_ET_DYN_BASE, ELF_ET_DYN_BASE + span):
            bias = ELF_ET_DYN_BASE - lo
        else:
            bias = mm.find_gap(span) - lo
    else:
        bias = 0
        if lo < 0x10000 or hi > TASK_SIZE:
            raise SyscallError(Errno.ENOEXEC)
    inode = fd.inode
    mappable = inode.mappable()
    if mappable is None:
        raise SyscallError(Errno.EACCES)
    phdr_addr = 0
    for ptype, pflags, poff, vaddr, _paddr, filesz, memsz, _align in loads:
        if (vaddr - poff) % PAGE_SIZE:
            raise SyscallError(Errno.ENOEXEC)
        prot = (PROT_READ if pflags & PF_R else 0) | (PROT_WRITE if pflags & PF_W else 0) | \
            (PROT_EXEC if pflags & PF_X else 0)
        start = page_round_down(vaddr + bias)
        file_start = page_round_down(poff)
        file_end = poff + filesz
        map_end = page_round_up(vaddr + bias + filesz)
        if filesz:
            mm.mmap(start, map_end - start, prot | PROT_WRITE if memsz > filesz else prot,
                    MAP_PRIVATE, fixed=True, mappable=mappable, offset=file_start,
                    name=fd.path(), dev=inode.fs.dev, ino=inode.ino, extra=fd)
            if poff <= info.phoff < file_end:
                phdr_addr = vaddr + bias + (info.phoff - poff)
        if memsz > filesz:
            # Zero the tail of the last file page, then map anonymous pages for the bss.
            bss_start = vaddr + bias + filesz
            tail = page_round_up(bss_start) - bss_start
            if filesz and tail:
                mm.copy_out(bss_start, bytes(tail))
            if filesz and not prot & PROT_WRITE:
                mm.mprotect(start, map_end - start, prot)
            anon_start = page_round_up(bss_start) if filesz else start
            anon_end = page_round_up(vaddr + bias + memsz)
            if anon_end > anon_start:
                mm.mmap(anon_start, anon_end - anon_start, prot, MAP_PRIVATE, fixed=True)
    for p in info.phdrs:
        if p[0] == PT_PHDR:
            phdr_addr = p[3] + bias
    return bias, page_round_up(hi + bias), phdr_addr


def build_stack(mm: MemoryManager, argv: list[bytes], envp: list[bytes], execfn: bytes,
                auxv: list[tuple[int, int]], creds: Any) -> int:
    """Maps the stack and writes argc/argv/envp/auxv; returns the initial rsp."""
    total = sum(len(a) + 1 for a in argv) + sum(len(e) + 1 for e in envp)
    if total > MAX_ARGS_BYTES or any(len(a) >= MAX_ARG_STRLEN for a in argv + envp):
        raise SyscallError(Errno.E2BIG)
    mm.mmap(STACK_TOP - STACK_SIZE, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fixed=True,
            name=b"[stack]")
    sp = STACK_TOP
    blob = bytearray()

    def push_str(s: bytes) -> int:
        nonlocal sp
        sp -= len(s) + 1
        blob[0:0] = s + b"\0"
        return sp

    execfn_addr = push_str(execfn)
    env_addrs = [0] * len(envp)
    for i in range(len(envp) - 1, -1, -1):
        env_addrs[i] = push_str(envp[i])
    env_start = sp
    arg_addrs = [0] * len(argv)
    for i in range(len(argv) - 1, -1, -1):
        arg_addrs[i] = push_str(argv[i])
    mm.argv_start, mm.argv_end = sp, env_start
    mm.env_start, mm.env_end = env_start, execfn_addr
    platform_addr = push_str(b"x86_64")
    sp -= 16
    random_addr = sp
    blob[0:0] = os.urandom(16)
    sp &= ~15
    pad = (STACK_TOP - sp) - len(blob)
    blob[0:0] = bytes(pad)
    full_aux = auxv + [(AT_RANDOM, random_addr), (AT_EXECFN, execfn_addr),
                       (AT_PLATFORM, platform_addr), (AT_NULL, 0)]
    words = [len(argv)] + arg_addrs + [0] + env_addrs + [0]
    for k, v in full_aux:
        words += [k, v]
    table = struct.pack(f"<{len(words)}Q", *words)
    sp -= len(table)
    sp &= ~15
    table += bytes((STACK_TOP - len(blob)) - (sp + len(table)))
    mm.copy_out(sp, table + bytes(blob))
    mm.auxv = struct.pack(f"<{len(full_aux) * 2}Q", *[x for kv in full_aux for x in kv])
    return sp


def make_auxv(info: ElfInfo, bias: int, phdr_addr: int, interp_bias: int, creds: Any,
              sysinfo_ehdr: int = 0) -> list[tuple[int, int]]:
    # AT_SYSINFO_EHDR first, as Linux's ARCH_DLINFO puts it.
    aux = [(AT_SYSINFO_EHDR, sysinfo_ehdr)] if sysinfo_ehdr else []
    aux += [(AT_PHDR, phdr_addr), (AT_PHENT, _PHDR.size), (AT_PHNUM, info.phnum),
           (AT_PAGESZ, PAGE_SIZE), (AT_BASE, interp_bias), (AT_FLAGS, 0),
           (AT_ENTRY, info.entry + bias), (AT_UID, creds.uid), (AT_EUID, creds.euid),
           (AT_GID, creds.gid), (AT_EGID, creds.egid), (AT_SECURE, 0), (AT_CLKTCK, 100),
           (AT_HWCAP, _HOST_AUXV.get(AT_HWCAP, 0)), (AT_HWCAP2, _HOST_AUXV.get(AT_HWCAP2, 0))]
    if AT_MINSIGSTKSZ in _HOST_AUXV:
        aux.append((AT_MINSIGSTKSZ, _HOST_AUXV[AT_MINSIGSTKSZ]))
    return aux
