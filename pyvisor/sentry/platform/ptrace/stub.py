"""The stub program: a tiny static x86-64 ELF generated here, exec'd from a memfd.

Linux analogue: gVisor's pkg/sentry/platform/ptrace stub (stub_amd64.s).

At start the stub unmaps everything the host kernel gave it (stack, vDSO, vvar)
except its own page, then traps (int3) to tell the Sentry it is ready.  Its
address space then holds nothing but the stub page.  The rest of its life is a
loop `syscall; int3; jmp` that the Sentry uses to inject host system calls: it
sets the registers, points rip at the `syscall`, continues the stub and waits
for the `int3`.  Application code runs in the same address space, entered and
left through PTRACE_SYSEMU, so its syscalls never reach the host.
"""

from __future__ import annotations

import os
import struct

# The stub's page.  Below the host's stack-randomisation window (which spans the
# top 16 GiB of the user address space), so exec never collides with the stack.
STUB_START = 0x7FF000000000
STUB_SIZE = 0x1000
STUB_END = STUB_START + STUB_SIZE
TASK_SIZE = 0x7FFFFFFFF000  # top of the amd64 user address space (4-level paging)

# Application mappings must stay strictly below the stub.
MAX_APP_ADDR = STUB_START

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_CODE_OFFSET = _EHDR.size + _PHDR.size  # 120


def _code() -> tuple[bytes, int]:
    """The stub's machine code and the offset of its `syscall; int3` loop."""
    c = bytearray()
    # munmap(0, STUB_START)
    c += b"\xb8" + struct.pack("<I", 11)            # mov eax, SYS_munmap
    c += b"\x31\xff"                                 # xor edi, edi
    c += b"\x48\xbe" + struct.pack("<Q", STUB_START)  # movabs rsi, STUB_START
    c += b"\x0f\x05"                                 # syscall
    # munmap(STUB_END, TASK_SIZE - STUB_END)
    c += b"\xb8" + struct.pack("<I", 11)
    c += b"\x48\xbf" + struct.pack("<Q", STUB_END)    # movabs rdi, STUB_END
    c += b"\x48\xbe" + struct.pack("<Q", TASK_SIZE - STUB_END)
    c += b"\x0f\x05"
    c += b"\xcc"                                     # int3: ready
    loop = len(c)
    c += b"\x0f\x05"                                 # syscall   <- injection point
    c += b"\xcc"                                     # int3      <- injection done
    c += b"\xeb\xfb"                                 # jmp loop
    return bytes(c), loop


_CODE, _LOOP = _code()
# Address of the `syscall` instruction used for injection.
SYSCALL_ADDR = STUB_START + _CODE_OFFSET + _LOOP
# rip as seen at the int3 stop after an injected syscall (just past the int3).
AFTER_INT3 = SYSCALL_ADDR + 3


def build_stub_elf() -> bytes:
    """A complete static ELF executable holding the stub."""
    size = _CODE_OFFSET + len(_CODE)
    ehdr = _EHDR.pack(
        b"\x7fELF\x02\x01\x01" + bytes(9),   # 64-bit, little endian, SysV
        2, 62, 1,                               # ET_EXEC, EM_X86_64, EV_CURRENT
        STUB_START + _CODE_OFFSET,              # e_entry
        _EHDR.size, 0,                          # e_phoff, e_shoff
        0, _EHDR.size, _PHDR.size, 1, 0, 0, 0)
    phdr = _PHDR.pack(1, 5, 0, STUB_START, STUB_START, size, size, 0x1000)  # PT_LOAD R+X
    return ehdr + phdr + _CODE


def stub_memfd() -> int:
    """A close-on-exec memfd holding the stub program, ready for fexecve."""
    fd = os.memfd_create("pyvisor-stub", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, build_stub_elf())
    # Seal it: nothing may change the stub after this point.
    import fcntl
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    return fd
