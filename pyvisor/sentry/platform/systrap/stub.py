"""The systrap stub program: the ptrace stub's injection loop plus a signal handler
through which application threads stop without ptrace.

gVisor: pkg/sentry/platform/systrap/sysmsg (sighandler_amd64.c, sysmsg.h).

Start-up (as the ptrace stub, platform/ptrace/stub.py): unmap everything but the
stub page; install HANDLER for every signal that stops an application thread
(SIGNALS: SA_SIGINFO|SA_ONSTACK|SA_RESTORER, every signal blocked while it runs);
no_new_privs; the stub's seccomp filter (`base_filter`); int3.  Then the loop
`syscall; int3` through which the Sentry injects host syscalls into the one
*syscall thread* of each stub process, which stays ptraced for life.

Application threads are further threads of the same process, cloned untraced by
one injection at CLONE_ENTRY; each sets itself up from stub code (its *region*,
region.py, mapped, an altstack inside it, a second seccomp filter `app_filter`)
before it runs any application code.  Every syscall an application thread makes is a
SECCOMP_RET_TRAP: the host kernel delivers SIGSYS on the altstack, writing the
whole ucontext (registers, XSAVE image) and siginfo into the region, which is a
MAP_SHARED mapping of a memfd the Sentry has mapped too.  HANDLER (`_handler`) copies
the registers and fs/gs base into the region in arch.Registers' layout, sets the
region's state word to STOPPED, writes 8 bytes to the wake eventfd (WAKE_FD, the
Sentry's platform event) and waits on the state word (FUTEX_WAIT) until the Sentry,
having written the registers it wants, sets it to RUN; then it copies them into the
ucontext, loads fs/gs base and returns into RESTORER, rt_sigreturn.  Faults and the
Sentry's interrupt signal take the same path.  A patched syscall site jumps through
the table (trampolines.TABLE_ADDR) to its slot's entry and a trampoline
(trampolines.py, assembled into the handler's code here) that stops the same way
without a signal (README, *Syscall-site patching*).
"""

from __future__ import annotations

import os
import struct

from pyvisor.sentry.arch import fpu
from pyvisor.sentry.platform.ptrace.stub import (_CODE_OFFSET, _EHDR, _PHDR, STUB_START,
                                                 TASK_SIZE)
from pyvisor.sentry.platform.systrap import trampolines
from pyvisor.sentry.platform.systrap.asm import RAX, RBX, RDI, RDX, RSI, Assembler, d32
from pyvisor.sentry.platform.systrap.region import (FP_OFF, FRAME_OFF, KIND_SIGNAL,
                                                    OFF_KIND, OFF_PEND, OFF_UC,
                                                    PENDFP_OFF, REGION_FD, REGION_SIZE,
                                                    REGIONS_START, STATE_ESCALATE,
                                                    STATE_RUN, STATE_STOPPED, WAKE_FD,
                                                    reg_off, wait_loop)

SYS_STUB_SIZE = 0x4000       # the stub's pages (ptrace's one, and the trampolines' entries)
SYS_STUB_END = STUB_START + SYS_STUB_SIZE

# The signals that stop an application thread.  SIGUSR2 is the Sentry's interrupt
# (Platform.interrupt: tgkill); nothing else sends it (the application cannot).
SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGUSR2, SIGSEGV, SIGSYS = 4, 5, 7, 8, 12, 11, 31
SIG_INTERRUPT = SIGUSR2
SIGNALS = (SIGSYS, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIG_INTERRUPT)
_SA_SIGINFO, _SA_ONSTACK, _SA_RESTORER = 0x4, 0x08000000, 0x04000000

# struct sigcontext's general registers, in order, and the other places the handler
# reads and writes in the host's ucontext.
_SC_GREGS = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx",
             "rdx", "rax", "rcx", "rsp", "rip", "eflags")    # struct sigcontext order
_UC_MCONTEXT = 40                # ucontext.uc_mcontext
_SC_CS, _SC_SS = 144, 150        # sigcontext.cs, .ss (u16)
_UC_SIGMASK = 296                # ucontext.uc_sigmask


def _handler(frame_off: int) -> tuple[bytes, dict[str, int]]:
    """HANDLER's code (position independent) and the offsets of its parts: the signal
    handler, then the trampolines' common part (TRAMPOLINE, trampolines.emit) and their
    data, all within the range whose syscall instructions the filters let through.

    handler(sig, info, uc), on the region's altstack (rsp = the frame):
        rbx = rsp & -REGION_SIZE                    the region
        [rbx+OFF_UC] = uc                           (the Sentry checks it)
        interrupted inside the trampoline (uc's rip), see below; otherwise
        REGS = uc's general registers, cs, ss; fs base; gs base (0 if it is the region)
        KIND = SIGNAL; [rbx] = STOPPED; write(WAKE_FD, &one, 8)
        spin [rbx+OFF_SPIN] times while [rbx] == STOPPED, then futex(rbx, FUTEX_WAIT, STOPPED)
        until [rbx] != STOPPED
        [rbx] == RUN:  PEND: the FP image at PENDFP into uc's FP image, PEND = 0;
                       uc (at its fixed place) = REGS, no host signal blocked;
                       wrfsbase, wrgsbase (the region if REGS says 0); ret (into
                       RESTORER: rt_sigreturn)
        otherwise:     exit(0)                      (the Sentry released the thread)

    Signals inside the trampoline: before its [rbx] = STOPPED, the interrupt signal is
    ignored (a stop follows at once); after it, while [rbx] is STOPPED, too; once the
    Sentry has set RUN or ESCALATE (and through the trampoline's way back) REGS hold
    the thread's registers: the stop reports them as they are (KIND = SIGNAL).  The
    trampoline's ud2 (ESCALATE) resumes from REGS through the RUN path above.  Faults
    take the ordinary path wherever they happen.
    """
    a = Assembler()
    a += b"\x48\x89\xe3"                                   # mov rbx, rsp
    a += b"\x48\x81\xe3" + d32(-REGION_SIZE)               # and rbx, -REGION_SIZE
    a += b"\x48\x89\x53" + bytes([OFF_UC])                 # mov [rbx+OFF_UC], rdx
    a.ld(RAX, RDX, _UC_MCONTEXT + 8 * _SC_GREGS.index("rip"))
    a.jump(b"\x48\x8d\x0d", "fast")                         # lea rcx, [rip+fast]
    a += b"\x48\x29\xc8"                                    # sub rax, rcx
    a += b"\x48\x3d"                                         # cmp rax, wait-fast
    a.hole("fast_wait")
    a.jump(b"\x0f\x82", "in_entry")                          # jb in_entry
    a += b"\x48\x3d"                                         # cmp rax, exit_end-fast
    a.hole("fast_exit_end")
    a.jump(b"\x0f\x82", "in_wait")                           # jb in_wait
    a.label("normal")
    a += b"\xc7\x43" + bytes([OFF_KIND]) + struct.pack("<I", KIND_SIGNAL)
    for i, name in enumerate(_SC_GREGS):
        a.ld(RAX, RDX, _UC_MCONTEXT + 8 * i)
        a.st(RAX, RBX, reg_off(name))
    for sc, name in ((_SC_CS, "cs"), (_SC_SS, "ss")):
        a += b"\x0f\xb7\x82" + d32(_UC_MCONTEXT + sc)      # movzx eax, word [rdx+sc.seg]
        a.st(RAX, RBX, reg_off(name))
    a += b"\xf3\x48\x0f\xae\xc0"                            # rdfsbase rax
    a.st(RAX, RBX, reg_off("fs_base"))
    a += b"\xf3\x48\x0f\xae\xc8"                            # rdgsbase rax
    a += b"\x48\x39\xd8"                                    # cmp rax, rbx
    a += b"\x75\x02\x31\xc0"                                # jne +2; xor eax, eax
    a.st(RAX, RBX, reg_off("gs_base"))
    a.label("stop")
    a += b"\xc7\x03" + struct.pack("<I", STATE_STOPPED)     # mov dword [rbx], STOPPED
    wait_loop(a, "")
    a += b"\x8b\x03\x83\xf8" + bytes([STATE_RUN])           # mov eax, [rbx]; cmp eax, RUN
    a.jump(b"\x0f\x85", "leave")                             # jne leave
    a.label("resume")
    a += b"\x83\x7b" + bytes([OFF_PEND]) + b"\x00"           # cmp dword [rbx+OFF_PEND], 0
    a.jump(b"\x74", "no_pend", 1)
    a.lea(RSI, RBX, PENDFP_OFF)
    a.lea(RDI, RBX, FP_OFF)
    a += b"\xb9" + struct.pack("<I", fpu.FRAME_BYTES)        # mov ecx, FRAME_BYTES
    a += b"\xf3\xa4"                                         # rep movsb
    a += b"\xc7\x43" + bytes([OFF_PEND]) + struct.pack("<I", 0)
    a.label("no_pend")
    a.lea(RDX, RBX, frame_off + 8)                         # lea rdx, [rbx+uc]
    for i, name in enumerate(_SC_GREGS):
        a.ld(RAX, RBX, reg_off(name))
        a.st(RAX, RDX, _UC_MCONTEXT + 8 * i)
    for sc, name in ((_SC_CS, "cs"), (_SC_SS, "ss")):
        a.ld(RAX, RBX, reg_off(name))
        a += b"\x66\x89\x82" + d32(_UC_MCONTEXT + sc)      # mov [rdx+sc.seg], ax
    a += b"\x48\xc7\x82" + d32(_UC_SIGMASK) + d32(0)      # no host signal blocked
    a.ld(RAX, RBX, reg_off("fs_base"))
    a += b"\xf3\x48\x0f\xae\xd0"                            # wrfsbase rax
    a.ld(RAX, RBX, reg_off("gs_base"))
    a += b"\x48\x85\xc0\x75\x03\x48\x89\xd8"                # test rax,rax; jnz +3; mov rax,rbx
    a += b"\xf3\x48\x0f\xae\xd8"                            # wrgsbase rax
    a.label("ignore")
    a += b"\xc3"                                             # ret: into RESTORER
    # Interrupted in the trampoline before its stop: ignore the interrupt signal.
    a.label("in_entry")
    a += b"\x83\xff" + bytes([SIG_INTERRUPT])               # cmp edi, SIG_INTERRUPT
    a.jump(b"\x0f\x84", "ignore")
    a.jump(b"\xe9", "normal")
    a.label("in_wait")
    a += b"\x48\x3d"                                         # cmp rax, esc-fast
    a.hole("esc")
    a.jump(b"\x75", "not_esc", 1)
    a += b"\x83\xff" + bytes([SIGILL])                      # cmp edi, SIGILL
    a.jump(b"\x75", "not_esc", 1)
    a += b"\x83\x3b" + bytes([STATE_ESCALATE])              # cmp dword [rbx], ESCALATE
    a.jump(b"\x0f\x84", "resume")
    a.label("not_esc")
    a += b"\x83\xff" + bytes([SIG_INTERRUPT])
    a.jump(b"\x0f\x85", "normal")
    a += b"\x83\x3b" + bytes([STATE_STOPPED])
    a.jump(b"\x0f\x84", "ignore")
    a += b"\xc7\x43" + bytes([OFF_KIND]) + struct.pack("<I", KIND_SIGNAL)
    a.jump(b"\xe9", "stop")                                  # REGS are the thread's: stop
    a.label("leave")
    a += b"\xb8" + struct.pack("<I", _NR_EXIT) + b"\x31\xff"  # exit(0)
    a.label("exit")
    a += b"\x0f\x05\x0f\x0b"
    a.label("restorer")
    a += b"\xb8" + struct.pack("<I", _NR_RT_SIGRETURN)       # rt_sigreturn
    a.label("sigreturn")
    a += b"\x0f\x05\x0f\x0b"
    trampolines.emit(a)
    a.label("end")                                   # every syscall the filters allow is before
    a += b"\x0f\x05"                                         # FALLBACK: syscall (traps)
    a.label("fallback_end")
    a += b"\x0f\x0b"                                         # ud2
    while len(a.c) % 8:
        a += b"\xcc"
    a.label("one")
    a += struct.pack("<Q", 1)
    trampolines.emit_data(a)
    return a.finish(), a.at



# Host syscalls the Sentry injects into the syscall thread: ptrace's (platform/ptrace/
# stub.py).
_NR_MMAP, _NR_MPROTECT, _NR_MUNMAP, _NR_MREMAP, _NR_MADVISE = 9, 10, 11, 25, 28
_NR_CLONE, _NR_EXIT, _NR_PRCTL, _NR_SIGALTSTACK, _NR_SECCOMP = 56, 60, 157, 131, 317
_NR_WRITE, _NR_RT_SIGRETURN, _NR_FUTEX = 1, 15, 202
INJECTED_SYSCALLS = (_NR_MMAP, _NR_MPROTECT, _NR_MUNMAP, _NR_MREMAP, _NR_MADVISE, _NR_EXIT)
PR_SET_NAME = 15
CLONE_PROCESS = 0x00008000 | 17                                   # CLONE_PARENT | SIGCHLD
# VM | SIGHAND | THREAD | CHILD_CLEARTID | UNTRACED
CLONE_APP_THREAD = 0x00000100 | 0x00000800 | 0x00010000 | 0x00200000 | 0x00800000
FUTEX_WAIT = 0
_PROT_RW, _MAP_SHARED_FIXED, _MADV_DONTFORK = 3, 0x01 | 0x10, 10

_AUDIT_ARCH_X86_64 = 0xC000003E
_RET_ALLOW = 0x7FFF0000
_RET_TRAP = 0x00030000
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_NR, _ARCH, _IP_LO, _IP_HI = 0, 4, 8, 12


def _arg_lo(i: int) -> int:
    return 16 + 8 * i


def _arg_hi(i: int) -> int:
    return 20 + 8 * i


class _Bpf:
    """A tiny classic-BPF assembler with forward labels (jumps are forward only)."""

    def __init__(self) -> None:
        self.prog: list[tuple[int, str | int, str | int, int]] = []
        self.labels: dict[str, int] = {}

    def ld(self, off: int) -> None:
        self.prog.append((_LD_W_ABS, 0, 0, off))

    def j(self, op: int, k: int, jt: str | int = 0, jf: str | int = 0) -> None:
        self.prog.append((op, jt, jf, k))

    def ret(self, k: int) -> None:
        self.prog.append((_RET_K, 0, 0, k))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.prog)

    def bytes(self) -> bytes:
        out = []
        for i, (code, jt, jf, k) in enumerate(self.prog):
            t = self.labels[jt] - i - 1 if isinstance(jt, str) else jt
            f = self.labels[jf] - i - 1 if isinstance(jf, str) else jf
            assert 0 <= t < 256 and 0 <= f < 256
            out.append(struct.pack("<HBBI", code, t, f, k))
        return b"".join(out)


def _handler_rules(b: _Bpf, lo: int, end: int) -> None:
    """ip (low half in A; the address after the syscall instruction) within the handler:
    only its own four syscalls."""
    b.j(_JGE_K, lo + 2, 0, "trap")
    b.j(_JGE_K, end, "trap", 0)
    b.ld(_NR)
    b.j(_JEQ_K, _NR_FUTEX, "futex", 0)
    b.j(_JEQ_K, _NR_WRITE, "write", 0)
    b.j(_JEQ_K, _NR_RT_SIGRETURN, "allow", 0)
    b.j(_JEQ_K, _NR_EXIT, "allow", "trap")
    b.label("futex")                       # FUTEX_WAIT only (no wake, requeue, PI)
    b.ld(_arg_lo(1))
    b.j(_JEQ_K, FUTEX_WAIT, "allow", "trap")
    b.label("write")                       # only to the wake eventfd
    b.ld(_arg_lo(0))
    b.j(_JEQ_K, WAKE_FD, "allow", "trap")


def base_filter(syscall_ip: int, handler_lo: int, handler_end: int, setup_alt_ip: int,
                setup_seccomp_ip: int, clone_ip: int, setup_mmap_ip: int,
                setup_madvise_ip: int) -> bytes:
    """The stub process's filter (every thread).  Application syscalls are TRAPs
    (SIGSYS to the handler) except: the handler's own calls from inside the handler;
    a new thread's sigaltstack and seccomp from their two set-up instructions; and,
    from the injection point only, the syscalls the Sentry injects.  Anything else
    at the injection point traps too: an application thread that jumps there is served
    by the Sentry, as on ptrace (and its own app_filter traps even the injected ones).
    Another architecture (int 0x80, 32-bit code) traps too: the Sentry answers ENOSYS."""
    assert syscall_ip >> 32 == handler_lo >> 32 == (handler_end - 1) >> 32
    b = _Bpf()
    b.ld(_ARCH)
    b.j(_JEQ_K, _AUDIT_ARCH_X86_64, 0, "trap")
    b.ld(_IP_HI)
    b.j(_JEQ_K, syscall_ip >> 32, 0, "trap")       # (the vsyscall page traps here too)
    b.ld(_IP_LO)
    b.j(_JEQ_K, syscall_ip & 0xFFFFFFFF, "inject", 0)
    b.j(_JEQ_K, setup_alt_ip & 0xFFFFFFFF, "setup_alt", 0)
    b.j(_JEQ_K, setup_seccomp_ip & 0xFFFFFFFF, "setup_seccomp", 0)
    b.j(_JEQ_K, clone_ip & 0xFFFFFFFF, "clone_thread", 0)
    b.j(_JEQ_K, setup_mmap_ip & 0xFFFFFFFF, "setup_mmap", 0)
    b.j(_JEQ_K, setup_madvise_ip & 0xFFFFFFFF, "setup_madvise", 0)
    _handler_rules(b, handler_lo & 0xFFFFFFFF, handler_end & 0xFFFFFFFF)
    b.label("setup_alt")                   # a new thread's set-up (before app_filter)
    b.ld(_NR)
    b.j(_JEQ_K, _NR_SIGALTSTACK, "allow", "trap")
    b.label("setup_seccomp")
    b.ld(_NR)
    b.j(_JEQ_K, _NR_SECCOMP, "allow", "trap")
    b.label("setup_mmap")                  # a new thread's region: that mapping only
    b.ld(_NR)
    b.j(_JEQ_K, _NR_MMAP, 0, "trap")
    for i, v in ((0, REGIONS_START >> 32), (1, 0), (2, 0), (3, 0), (4, 0)):
        b.ld(_arg_hi(i))
        b.j(_JEQ_K, v, 0, "trap")
    for i, v in ((1, REGION_SIZE), (2, _PROT_RW), (3, _MAP_SHARED_FIXED), (4, REGION_FD)):
        b.ld(_arg_lo(i))
        b.j(_JEQ_K, v, 0, "trap")
    b.j(_JEQ_K, REGION_FD, "allow", "trap")
    b.label("setup_madvise")               # ... and its MADV_DONTFORK only
    b.ld(_NR)
    b.j(_JEQ_K, _NR_MADVISE, 0, "trap")
    b.ld(_arg_hi(2))
    b.j(_JEQ_K, 0, 0, "trap")
    b.ld(_arg_lo(2))
    b.j(_JEQ_K, _MADV_DONTFORK, "allow", "trap")
    b.label("clone_thread")                # an application thread, from CLONE_ENTRY only
    b.ld(_NR)
    b.j(_JEQ_K, _NR_CLONE, 0, "trap")
    b.ld(_arg_hi(0))
    b.j(_JEQ_K, 0, 0, "trap")
    b.ld(_arg_lo(0))
    b.j(_JEQ_K, CLONE_APP_THREAD, "allow", "trap")
    b.label("inject")
    b.ld(_NR)
    for nr in INJECTED_SYSCALLS:
        b.j(_JEQ_K, nr, "allow", 0)
    b.j(_JEQ_K, _NR_CLONE, "clone", 0)
    b.j(_JEQ_K, _NR_PRCTL, "prctl", "trap")
    b.label("clone")
    b.ld(_arg_hi(0))
    b.j(_JEQ_K, 0, 0, "trap")
    b.ld(_arg_lo(0))
    b.j(_JEQ_K, CLONE_PROCESS, "allow", "trap")
    b.label("prctl")
    b.ld(_arg_hi(0))
    b.j(_JEQ_K, 0, 0, "trap")
    b.ld(_arg_lo(0))
    b.j(_JEQ_K, PR_SET_NAME, "allow", "trap")
    b.label("trap")
    b.ret(_RET_TRAP)
    b.label("allow")
    b.ret(_RET_ALLOW)
    return b.bytes()


def app_filter(handler_lo: int, handler_end: int) -> bytes:
    """The second filter of every application thread: everything TRAPs except the
    handler's own calls from inside the handler (futex wait, the wake write,
    rt_sigreturn, exit)."""
    b = _Bpf()
    b.ld(_ARCH)
    b.j(_JEQ_K, _AUDIT_ARCH_X86_64, 0, "trap")
    b.ld(_IP_HI)
    b.j(_JEQ_K, handler_lo >> 32, 0, "trap")
    b.ld(_IP_LO)
    _handler_rules(b, handler_lo & 0xFFFFFFFF, handler_end & 0xFFFFFFFF)
    b.label("trap")
    b.ret(_RET_TRAP)
    b.label("allow")
    b.ret(_RET_ALLOW)
    return b.bytes()


class _Asm:
    def __init__(self) -> None:
        self.c = bytearray()

    def mov32(self, reg: int, imm: int) -> None:     # mov r32, imm32 (eax..edi)
        self.c += bytes([0xB8 + reg]) + struct.pack("<I", imm)

    def movabs(self, reg: int, imm: int) -> int:     # movabs r64, imm64; returns imm offset
        self.c += bytes([0x48, 0xB8 + reg])
        off = len(self.c)
        self.c += struct.pack("<Q", imm)
        return off

    def syscall(self) -> None:
        self.c += b"\x0f\x05"


_EAX, _ECX, _EDX, _EBX, _ESP, _EBP, _ESI, _EDI = range(8)


def _code(code_addr: int) -> dict[str, int | bytes]:
    """The stub's code and data from `code_addr`, and the addresses that matter."""
    a = _Asm()
    # munmap(0, STUB_START); munmap(SYS_STUB_END, TASK_SIZE - SYS_STUB_END)
    a.mov32(_EAX, 11)
    a.c += b"\x31\xff"
    a.movabs(_ESI, STUB_START)
    a.syscall()
    a.mov32(_EAX, 11)
    a.movabs(_EDI, SYS_STUB_END)
    a.movabs(_ESI, TASK_SIZE - SYS_STUB_END)
    a.syscall()
    # rt_sigaction(sig, &act, NULL, 8) for each stopping signal.
    act_imms = []
    for sig in SIGNALS:
        a.mov32(_EAX, 13)
        a.mov32(_EDI, sig)
        act_imms.append(a.movabs(_ESI, 0))
        a.c += b"\x31\xd2"                        # xor edx, edx
        a.c += b"\x41\xba" + struct.pack("<I", 8)  # mov r10d, 8
        a.syscall()
    # prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    a.mov32(_EAX, 157)
    a.mov32(_EDI, 38)
    a.mov32(_ESI, 1)
    a.c += b"\x31\xd2\x4d\x31\xd2\x4d\x31\xc0"
    a.syscall()
    # seccomp(SECCOMP_SET_MODE_FILTER, 0, &base); its result stays in rax for the Sentry.
    a.mov32(_EAX, 317)
    a.mov32(_EDI, 1)
    a.c += b"\x31\xf6"
    base_imm = a.movabs(_EDX, 0)
    a.syscall()
    a.c += b"\xcc"                                 # int3: ready
    loop = len(a.c)
    a.c += b"\x0f\x05\xcc\xeb\xfb"                 # syscall; int3; jmp loop
    # The Sentry makes an application thread here: clone(CLONE_APP_THREAD, 0, 0, ctid)
    # in the syscall thread, untraced (no event stop, no attach to undo); the syscall
    # thread goes on to int3, the new thread (rax 0) to the set-up, r12 = its stack_t.
    clone_entry = len(a.c)
    a.syscall()
    clone_ip = len(a.c)
    a.c += b"\x48\x85\xc0\x74\x03"                 # test rax, rax; jz +3 (the set-up)
    a.c += b"\xcc\xeb\xfd"                         # int3; jmp back (never resumed)
    # A new application thread starts here, untraced, r12 = its stack_t in its region,
    # r13 = its region's address when the region is new to this process (else 0) and r14
    # its offset in the regions memfd: it maps its region itself (MAP_SHARED, and
    # MADV_DONTFORK so that a fork's child has none of it); then
    # sigaltstack(r12, NULL); seccomp(SET_MODE_FILTER, 0, &app); then mmap(0, 0) at the
    # injection point, which only the application filter traps: its SIGSYS (the first
    # stop the Sentry sees) proves the filter is in place.
    setup = len(a.c)
    a.c += b"\x4d\x85\xed"                         # test r13, r13
    a.c += b"\x74\x00"                             # jz skip: mapped already
    skip_from = len(a.c)
    a.mov32(_EAX, _NR_MMAP)
    a.c += b"\x4c\x89\xef"                         # mov rdi, r13
    a.mov32(_ESI, REGION_SIZE)
    a.mov32(_EDX, _PROT_RW)
    a.c += b"\x41\xba" + struct.pack("<I", _MAP_SHARED_FIXED)   # mov r10d, flags
    a.c += b"\x41\xb8" + struct.pack("<I", REGION_FD)           # mov r8d, REGION_FD
    a.c += b"\x4d\x89\xf1"                         # mov r9, r14
    a.syscall()
    setup_mmap_ip = len(a.c)
    a.c += b"\x4c\x39\xe8\x74\x02\x0f\x0b"         # cmp rax, r13; je +2; ud2 (no altstack
                                                   # yet: the host kills the process)
    a.mov32(_EAX, _NR_MADVISE)
    a.c += b"\x4c\x89\xef"                         # mov rdi, r13
    a.mov32(_ESI, REGION_SIZE)
    a.mov32(_EDX, _MADV_DONTFORK)
    a.syscall()
    setup_madvise_ip = len(a.c)
    a.c[skip_from - 1] = len(a.c) - skip_from
    a.mov32(_EAX, _NR_SIGALTSTACK)
    a.c += b"\x4c\x89\xe7"                         # mov rdi, r12
    a.c += b"\x31\xf6"                              # xor esi, esi
    a.syscall()
    setup_alt_ip = len(a.c)
    a.mov32(_EAX, _NR_SECCOMP)
    a.mov32(_EDI, 1)
    a.c += b"\x31\xf6"
    app_imm = a.movabs(_EDX, 0)
    a.syscall()
    setup_seccomp_ip = len(a.c)
    a.mov32(_EAX, _NR_MMAP)
    a.c += b"\x31\xff\x31\xf6"                      # xor edi, edi; xor esi, esi
    a.c += b"\xe9" + struct.pack("<i", loop - (len(a.c) + 5))   # jmp loop
    first = setup
    while len(a.c) % 16:
        a.c += b"\xcc"
    handler = len(a.c)
    h, hat = _handler(FRAME_OFF)
    a.c += h
    handler_lo = code_addr + handler
    handler_end = code_addr + handler + hat["end"]
    # struct kernel_sigaction: handler, flags, restorer, mask (all blocked).
    act = len(a.c)
    a.c += struct.pack("<QQQQ", handler_lo, _SA_SIGINFO | _SA_ONSTACK | _SA_RESTORER,
                       code_addr + handler + hat["restorer"], 0xFFFFFFFFFFFFFFFF)
    for off in act_imms:
        a.c[off:off + 8] = struct.pack("<Q", code_addr + act)
    assert setup == clone_ip + 8
    base = base_filter(code_addr + loop + 2, handler_lo, handler_end,
                       code_addr + setup_alt_ip, code_addr + setup_seccomp_ip,
                       code_addr + clone_ip, code_addr + setup_mmap_ip,
                       code_addr + setup_madvise_ip)
    app = app_filter(handler_lo, handler_end)
    base_prog = len(a.c)
    a.c += struct.pack("<H6xQ", len(base) // 8, code_addr + base_prog + 32)
    app_prog = len(a.c)
    a.c += struct.pack("<H6xQ", len(app) // 8, code_addr + base_prog + 32 + len(base))
    a.c += base + app
    a.c[base_imm:base_imm + 8] = struct.pack("<Q", code_addr + base_prog)
    a.c[app_imm:app_imm + 8] = struct.pack("<Q", code_addr + app_prog)
    # The slots' entries (trampolines.py): no syscall instruction among them.
    while len(a.c) % 16:
        a.c += b"\xcc"
    entries = len(a.c)
    a.c += trampolines.slot_entries(entries, handler + hat["fast"], handler + hat["fast_gen"])
    slots = trampolines.table_slots(code_addr + entries)
    return {"setup_mmap": code_addr + setup_mmap_ip,
            "setup_madvise": code_addr + setup_madvise_ip,
            "clone_entry": code_addr + clone_entry, "clone_int3": code_addr + clone_ip + 5,
            "fast": code_addr + handler + hat["fast"],
            "fast_wait": code_addr + handler + hat["fast_wait"],
            "fast_end": code_addr + handler + hat["fast_exit_end"],
            "esc": code_addr + handler + hat["esc"],
            "fallback": code_addr + handler + hat["fallback_end"],
            "entries": code_addr + entries, "slots": slots,
            "code": bytes(a.c), "syscall": code_addr + loop, "first": code_addr + first,
            "setup_alt": code_addr + setup_alt_ip, "setup_seccomp": code_addr + setup_seccomp_ip,
            "handler": handler_lo, "handler_end": handler_end,
            "restorer": code_addr + handler + hat["restorer"], "app_fprog": code_addr + app_prog,
            "sites": (hat["write"], hat["futex"], hat["exit"], hat["sigreturn"])}


_C = _code(STUB_START + _CODE_OFFSET)
_CODE = _C["code"]
assert isinstance(_CODE, bytes) and _CODE_OFFSET + len(_CODE) <= SYS_STUB_SIZE
# The trampoline (syscall-site patching, SECURITY.md *systrap*).
TRAMPOLINE = int(_C["fast"])           # its common part: [TRAMPOLINE, FAST_WAIT) saves state
FAST_WAIT = int(_C["fast_wait"])       # ... then waits, and returns by FAST_END
FAST_END = int(_C["fast_end"])
ESCALATE_IP = int(_C["esc"])           # its ud2: resume through the handler instead
FALLBACK_END = int(_C["fallback"])     # after the syscall a trampoline falls back to
ENTRIES = int(_C["entries"])           # slot i's entry: ENTRIES + ENTRY_SIZE * i
TABLE_SLOTS = _C["slots"]               # the table's slot pointers (trampolines.py)
assert isinstance(TABLE_SLOTS, bytes)
SYSCALL_ADDR = int(_C["syscall"])     # the injection point
CLONE_ENTRY = int(_C["clone_entry"])   # where the Sentry clones an application thread
CLONE_INT3 = int(_C["clone_int3"])     # ... and the syscall thread's int3 after it
AFTER_INT3 = SYSCALL_ADDR + 3
FIRST_TRAP = int(_C["first"])          # where a new application thread starts (set-up)
SETUP_ALT_IP = int(_C["setup_alt"])          # seccomp_data ip of the set-up's sigaltstack
SETUP_SECCOMP_IP = int(_C["setup_seccomp"])  # ... and of its seccomp
SETUP_MMAP_IP = int(_C["setup_mmap"])        # ... of the mmap of its region
SETUP_MADVISE_IP = int(_C["setup_madvise"])  # ... and of its MADV_DONTFORK
HANDLER = int(_C["handler"])
HANDLER_END = int(_C["handler_end"])
RESTORER = int(_C["restorer"])
# The handler's syscall instructions (offsets from HANDLER): what an application that
# jumps into the handler can reach (tests/security/test_systrap.py tries each).
SITE_WRITE, SITE_FUTEX, SITE_EXIT, SITE_SIGRETURN = _C["sites"]  # type: ignore[misc]
APP_FPROG = int(_C["app_fprog"])       # struct sock_fprog of app_filter, in the stub page


def build_stub_elf() -> bytes:
    """A complete static ELF executable holding the stub."""
    size = _CODE_OFFSET + len(_CODE)
    ehdr = _EHDR.pack(b"\x7fELF\x02\x01\x01" + bytes(9), 2, 62, 1, STUB_START + _CODE_OFFSET,
                      _EHDR.size, 0, 0, _EHDR.size, _PHDR.size, 1, 0, 0, 0)
    phdr = _PHDR.pack(1, 5, 0, STUB_START, STUB_START, size, size, 0x1000)  # PT_LOAD R+X
    return ehdr + phdr + _CODE


def stub_memfd() -> int:
    """A sealed close-on-exec memfd holding the stub program, ready for fexecve."""
    import fcntl
    fd = os.memfd_create("pyvisor-stub", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, build_stub_elf())
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    return fd
