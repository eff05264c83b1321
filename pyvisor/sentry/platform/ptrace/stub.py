"""The stub program: a tiny static x86-64 ELF generated here, exec'd from a memfd.

Linux analogue: gVisor's pkg/sentry/platform/ptrace stub (stub_amd64.s).

At start the stub unmaps everything the host kernel gave it (stack, vDSO, vvar)
except its own page, installs its seccomp filter (a second wall behind
PTRACE_SYSEMU: only the injection point may make host syscalls, and only the
ones the Sentry injects), then traps (int3) to tell the Sentry it is ready.  Its
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


# Host syscalls the Sentry injects into stubs (see subprocess.py and mm/).  The stub's
# seccomp filter allows exactly these, and only from the injection point.
INJECTED_SYSCALLS = (9, 10, 11, 25, 28, 56, 60, 157)
# mmap mprotect munmap mremap madvise clone exit prctl (PR_SET_NAME only: the program's
# name on the host, kernel/exec.py name_host_stub)
PR_SET_NAME = 15
# The only clone flags the Sentry injects: a new address space, or a new thread in one.
CLONE_FLAGS_ALLOWED = (0x00008000 | 17, 0x00000100 | 0x00000800 | 0x00010000)

_AUDIT_ARCH_X86_64 = 0xC000003E
_RET_KILL_PROCESS = 0x80000000
_RET_ALLOW = 0x7FFF0000
_RET_TRAP = 0x00030000
_LD_W_ABS, _JEQ_K, _RET_K = 0x20, 0x15, 0x06


def _filter(syscall_ip: int) -> bytes:
    """The stubs' seccomp filter: a wall behind PTRACE_SYSEMU.

    Application syscalls never reach it (PTRACE_SYSEMU skips seccomp); it sees only
    syscalls the stub really executes.  Those must come from the injection point,
    be one of INJECTED_SYSCALLS, and (for clone) carry flags the Sentry uses, (for
    prctl) be PR_SET_NAME; anything else kills the stub process.
    """
    prog: list[tuple[int, int, int, int]] = []
    kill_fixups: list[int] = []
    allow_fixups: list[int] = []

    def emit(code: int, k: int, jt: int = 0, jf: int = 0) -> int:
        prog.append((code, jt, jf, k))
        return len(prog) - 1

    emit(_LD_W_ABS, 4)                                         # arch
    kill_fixups.append(emit(_JEQ_K, _AUDIT_ARCH_X86_64))       # jf -> kill
    # The host's vsyscall emulation consults seccomp with ip in the vsyscall page (the
    # top of the address space): trap it, so the Sentry can emulate the call.
    emit(_LD_W_ABS, 12)
    vsys_check = emit(_JEQ_K, 0xFFFFFFFF)                      # jt -> trap
    emit(_LD_W_ABS, 8)                                         # ip, low half
    kill_fixups.append(emit(_JEQ_K, syscall_ip & 0xFFFFFFFF))
    emit(_LD_W_ABS, 12)                                        # ip, high half
    kill_fixups.append(emit(_JEQ_K, syscall_ip >> 32))
    emit(_LD_W_ABS, 0)                                         # nr
    clone_check = prctl_check = -1
    for nr in INJECTED_SYSCALLS:
        i = emit(_JEQ_K, nr)
        if nr == 56:
            clone_check = i
        elif nr == 157:
            prctl_check = i
        else:
            allow_fixups.append(i)
    kill_fixups.append(emit(_JEQ_K, 0xFFFFFFFF))               # never true: fall to kill
    clone_start = len(prog)
    emit(_LD_W_ABS, 16)                                        # clone flags, low half
    for flags in CLONE_FLAGS_ALLOWED:
        allow_fixups.append(emit(_JEQ_K, flags))
    kill_fixups.append(len(prog) - 1)                          # none matched: kill
    prctl_start = len(prog)
    emit(_LD_W_ABS, 20)                                        # prctl option, high half
    kill_fixups.append(emit(_JEQ_K, 0))
    emit(_LD_W_ABS, 16)                                        # low half
    i = emit(_JEQ_K, PR_SET_NAME)
    allow_fixups.append(i)
    kill_fixups.append(i)
    kill_at = emit(_RET_K, _RET_KILL_PROCESS)
    allow_at = emit(_RET_K, _RET_ALLOW)
    trap_at = emit(_RET_K, _RET_TRAP)
    out = []
    for i, (code, jt, jf, k) in enumerate(prog):
        if i in kill_fixups:
            if code == _JEQ_K and k == 0xFFFFFFFF:
                jt = jf = kill_at - i - 1
            else:
                jf = kill_at - i - 1
        if i in allow_fixups:
            jt = allow_at - i - 1
        if i == clone_check:
            jt = clone_start - i - 1
        if i == prctl_check:
            jt = prctl_start - i - 1
        if i == vsys_check:
            jt = trap_at - i - 1
        out.append(struct.pack("<HBBI", code, jt, jf, k))
    return b"".join(out)


def _code(code_addr: int) -> tuple[bytes, int]:
    """The stub's code and data (starting at `code_addr`), and the offset of its loop."""
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
    # prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    c += b"\xb8" + struct.pack("<I", 157)           # mov eax, SYS_prctl
    c += b"\xbf" + struct.pack("<I", 38)            # mov edi, PR_SET_NO_NEW_PRIVS
    c += b"\xbe" + struct.pack("<I", 1)             # mov esi, 1
    c += b"\x31\xd2"                                 # xor edx, edx
    c += b"\x4d\x31\xd2"                             # xor r10, r10
    c += b"\x4d\x31\xc0"                             # xor r8, r8
    c += b"\x0f\x05"
    # seccomp(SECCOMP_SET_MODE_FILTER, 0, &fprog); its result stays in rax for the Sentry.
    c += b"\xb8" + struct.pack("<I", 317)           # mov eax, SYS_seccomp
    c += b"\xbf" + struct.pack("<I", 1)             # mov edi, SECCOMP_SET_MODE_FILTER
    c += b"\x31\xf6"                                 # xor esi, esi
    fprog_imm = len(c) + 2
    c += b"\x48\xba" + bytes(8)                      # movabs rdx, &fprog (patched below)
    c += b"\x0f\x05"
    c += b"\xcc"                                     # int3: ready
    loop = len(c)
    c += b"\x0f\x05"                                 # syscall   <- injection point
    c += b"\xcc"                                     # int3      <- injection done
    c += b"\xeb\xfb"                                 # jmp loop
    while len(c) % 8:
        c += b"\xcc"
    filt = _filter(code_addr + loop + 2)
    fprog_off = len(c)
    c += struct.pack("<H6xQ", len(filt) // 8, code_addr + fprog_off + 16)
    c += filt
    c[fprog_imm:fprog_imm + 8] = struct.pack("<Q", code_addr + fprog_off)
    return bytes(c), loop


_CODE, _LOOP = _code(STUB_START + _CODE_OFFSET)
assert _CODE_OFFSET + len(_CODE) <= STUB_SIZE
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
