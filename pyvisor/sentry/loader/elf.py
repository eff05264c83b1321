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
EHDR_SIZE = _EHDR.size
PT_LOAD, PT_INTERP, PT_PHDR, PT_GNU_STACK = 1, 3, 6, 0x6474E551
ET_EXEC, ET_DYN = 2, 3
EM_X86_64 = 62
PF_X, PF_W, PF_R = 1, 2, 4

ELF_ET_DYN_BASE = 0x555555554000      # where PIE programs go (as Linux, minus randomisation)
STACK_TOP = 0x7FEFFFFFE000
STACK_SIZE = 8 << 20
MAX_ARG_STRLEN = 32 * PAGE_SIZE
MAX_ARGS_BYTES = 2 << 20               # a quarter of the 8 MiB stack, as Linux
MAX_SCRIPT_DEPTH = 5                   # #! levels (Linux: exec_binprm's depth > 5)

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


def parse_elf(head: bytes, fd: FileDescription, t: Any, is_interp: bool = False) -> ElfInfo:
    """Validates what Linux validates before exec's point of no return: the header,
    the program headers and PT_INTERP (ENOEXEC; ELIBBAD for an interpreter).  The
    PT_LOAD segments are checked while mapping them (map_elf), after that point.
    Linux: load_elf_binary, load_elf_phdrs."""
    bad = Errno.ELIBBAD if is_interp else Errno.ENOEXEC
    if len(head) < _EHDR.size or head[:4] != b"\x7fELF":
        raise SyscallError(bad)
    (ident, etype, machine, _ver, entry, phoff, _shoff, _flags, ehsize, phentsize, phnum,
     _shentsize, _shnum, _shstrndx) = _EHDR.unpack_from(head)
    if ident[4] != 2 or ident[5] != 1 or machine != EM_X86_64:
        raise SyscallError(bad)
    if etype not in (ET_EXEC, ET_DYN) and not is_interp:
        raise SyscallError(Errno.ENOEXEC)
    if phentsize != _PHDR.size or phnum == 0 or phnum > 65536 // _PHDR.size:
        raise SyscallError(bad)
    size = phnum * _PHDR.size
    if phoff > 1 << 62:
        raise SyscallError(bad)
    raw = head[phoff:phoff + size] if phoff + size <= len(head) else read_all(fd, t, size, phoff)
    if len(raw) != size:
        raise SyscallError(bad)
    phdrs = [_PHDR.unpack_from(raw, i * _PHDR.size) for i in range(phnum)]
    interp = None
    if not is_interp:
        # The first PT_INTERP names the interpreter; an interpreter's own is ignored.
        for ptype, _pflags, poff, _vaddr, _paddr, filesz, _memsz, _align in phdrs:
            if ptype != PT_INTERP:
                continue
            if filesz < 2 or filesz > 4096:
                raise SyscallError(Errno.ENOEXEC)
            data = read_all(fd, t, filesz, poff) if poff < 1 << 62 else b""
            if len(data) != filesz:
                raise SyscallError(Errno.EIO)       # Linux: elf_read's short read
            if data[-1:] != b"\0":
                raise SyscallError(Errno.ENOEXEC)
            interp = data[:data.index(b"\0")]      # what follows a NUL is ignored
            break
    return ElfInfo(etype, entry, phoff, phnum, phdrs, interp)


def check_args(argv: list[bytes], envp: list[bytes]) -> None:
    """E2BIG before the point of no return, as Linux's copy_strings."""
    total = sum(len(a) + 1 for a in argv) + sum(len(e) + 1 for e in envp)
    if total > MAX_ARGS_BYTES or any(len(a) >= MAX_ARG_STRLEN for a in argv + envp):
        raise SyscallError(Errno.E2BIG)


def map_elf(mm: MemoryManager, fd: FileDescription, info: ElfInfo, is_interp: bool) -> tuple[int, int, int]:
    """Maps PT_LOAD segments; returns (bias, end of image, address of the phdrs).
    Runs after exec's point of no return: an error here kills the process (SIGSEGV)
    rather than returning from execve, as in Linux.  Linux: load_elf_binary, elf_load."""
    loads = [p for p in info.phdrs if p[0] == PT_LOAD]
    if not loads:
        raise SyscallError(Errno.EINVAL)
    for _pt, _pf, _poff, vaddr, _pa, filesz, memsz, _al in loads:
        # Linux checks the segment's own (unbiased) p_vaddr, even for ET_DYN.
        if vaddr >= TASK_SIZE or filesz > memsz or memsz > TASK_SIZE or \
                TASK_SIZE - memsz < vaddr:
            raise SyscallError(Errno.EINVAL)
    lo = min(page_round_down(p[3]) for p in loads)
    hi = max(p[3] + p[6] for p in loads)
    if hi <= lo:
        raise SyscallError(Errno.EINVAL)
    span = page_round_up(hi) - lo
    if info.etype == ET_DYN:
        if not is_interp and mm.is_free(ELF_ET_DYN_BASE, ELF_ET_DYN_BASE + span):
            bias = ELF_ET_DYN_BASE - lo
        else:
            bias = mm.find_gap(span) - lo
    else:
        bias = 0
        if lo < 0x10000:
            raise SyscallError(Errno.EPERM)          # below mmap_min_addr
    inode = fd.inode
    mappable = inode.mappable()
    if mappable is None:
        raise SyscallError(Errno.EACCES)
    phdr_addr = 0
    for _ptype, pflags, poff, vaddr, _paddr, filesz, memsz, _align in loads:
        prot = (PROT_READ if pflags & PF_R else 0) | (PROT_WRITE if pflags & PF_W else 0) | \
            (PROT_EXEC if pflags & PF_X else 0)
        start = page_round_down(vaddr + bias)
        if filesz:
            if (vaddr - poff) % PAGE_SIZE or poff < vaddr % PAGE_SIZE or poff > 1 << 46:
                raise SyscallError(Errno.EINVAL)    # vm_mmap: an unaligned offset
            map_end = page_round_up(vaddr + bias + filesz)
            mm.mmap(start, map_end - start, prot, MAP_PRIVATE, fixed=True, mappable=mappable,
                    offset=page_round_down(poff), name=fd.path(), dev=inode.fs.dev,
                    ino=inode.ino, extra=fd)
            if poff <= info.phoff < poff + filesz:
                phdr_addr = vaddr + bias + (info.phoff - poff)
            zero_start = vaddr + bias + filesz
            if memsz > filesz and prot & PROT_WRITE:
                # Zero the rest of the last file page (Linux: padzero, whose failure
                # is ignored when the segment is not writable: the page keeps what
                # the file has there).
                tail = page_round_up(zero_start) - zero_start
                if tail:
                    mm.copy_out(zero_start, bytes(tail))
        else:
            zero_start = start
        if memsz > filesz:
            # The rest is anonymous memory, always writable (Linux: vm_brk_flags),
            # executable if the segment is.
            anon_start = page_round_up(zero_start)
            anon_end = page_round_up(vaddr + bias + memsz)
            if anon_end > anon_start:
                mm.mmap(anon_start, anon_end - anon_start,
                        PROT_READ | PROT_WRITE | (prot & PROT_EXEC), MAP_PRIVATE, fixed=True)
    for p in info.phdrs:
        if p[0] == PT_PHDR:
            phdr_addr = p[3] + bias
    entry = info.entry + bias
    if not is_interp and info.interp is None and not 0 <= entry < TASK_SIZE:
        raise SyscallError(Errno.EINVAL)
    return bias, page_round_up(hi + bias), phdr_addr


def build_stack(mm: MemoryManager, argv: list[bytes], envp: list[bytes], execfn: bytes,
                auxv: list[tuple[int, int]], creds: Any) -> int:
    """Maps the stack and writes argc/argv/envp/auxv; returns the initial rsp."""
    check_args(argv, envp)
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
              sysinfo_ehdr: int = 0, secure: bool = False) -> list[tuple[int, int]]:
    # AT_SYSINFO_EHDR first, as Linux's ARCH_DLINFO puts it.
    aux = [(AT_SYSINFO_EHDR, sysinfo_ehdr)] if sysinfo_ehdr else []
    aux += [(AT_PHDR, phdr_addr), (AT_PHENT, _PHDR.size), (AT_PHNUM, info.phnum),
           (AT_PAGESZ, PAGE_SIZE), (AT_BASE, interp_bias), (AT_FLAGS, 0),
           (AT_ENTRY, info.entry + bias), (AT_UID, creds.uid), (AT_EUID, creds.euid),
           (AT_GID, creds.gid), (AT_EGID, creds.egid), (AT_SECURE, int(secure)),
           (AT_CLKTCK, 100),
           (AT_HWCAP, _HOST_AUXV.get(AT_HWCAP, 0)), (AT_HWCAP2, _HOST_AUXV.get(AT_HWCAP2, 0))]
    if AT_MINSIGSTKSZ in _HOST_AUXV:
        aux.append((AT_MINSIGSTKSZ, _HOST_AUXV[AT_MINSIGSTKSZ]))
    return aux
