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
one injection at CLONE_ENTRY; each sets itself up from stub code (its *region*
mapped, an altstack inside it, a second seccomp filter `app_filter`) before it runs
any application code.  Every syscall an application thread makes is a
SECCOMP_RET_TRAP: the host kernel delivers SIGSYS on the altstack, writing the
whole ucontext (registers, XSAVE image) and siginfo into the region, which is a
MAP_SHARED mapping of a memfd the Sentry has mapped too.  HANDLER (`_handler`) copies
the registers and fs/gs base into the region in arch.Registers' layout, sets the
region's state word to STOPPED, writes 8 bytes to the wake eventfd (WAKE_FD, the
Sentry's platform event) and waits on the state word (FUTEX_WAIT) until the Sentry,
having written the registers it wants, sets it to RUN; then it copies them into the
ucontext, loads fs/gs base and returns into RESTORER, rt_sigreturn.  Faults and the
Sentry's interrupt signal take the same path.  A patched syscall site jumps through
the table (TABLE_ADDR) to a trampoline (`_trampoline`) that stops the same way
without a signal (README, *Syscall-site patching*).

Region of one application thread (REGION_SIZE bytes, REGION_SIZE-aligned, so the
handler finds it from its stack pointer, and the trampoline from the gs base):

    +0x00  state      u32   NEW 0, STOPPED 1 (handler, trampoline), RUN 2 (Sentry),
                            EXIT 3 (Sentry), ESCALATE 4 (Sentry: resume a trampoline
                            stop through the handler)
    +0x18  uc         u64   the ucontext address the handler was given (checked)
    +0x20  stack_t    24 B  the altstack, for the set-up's sigaltstack
    +0x40  tid        u32   CLONE_CHILD_CLEARTID word: 0 once the host thread is gone
    +0x44  spin       u32   how many times the handler looks at the state word (pause
                            between) before it sleeps on it; set by the Sentry
    +0x48  kind       u32   how the thread stopped: SIGNAL 1 (handler), FAST 2
    +0x4c  pend       u32   1: the Sentry left an FP image at PENDFP for the resume
    +0x50  appsp      u64   the trampoline's save of the application's rsp
    +0x58  retip      u64   where the trampoline's way back jumps
    +0x80  regs       216 B the registers in user_regs_struct's layout (arch.Registers)
    ..FAST_TOP              the trampoline's stack (below the altstack)
    +ALTSTACK .. +REGION_SIZE: the altstack (the frame lands at its top); its bottom
                            holds FASTFP (the trampoline's XSAVE image) and PENDFP

Everything in the region is writable by the application thread (and its siblings):
the Sentry copies once, validates, and never trusts it (SECURITY.md, *systrap*).
"""

from __future__ import annotations

import os
import struct

from pyvisor.sentry.arch import fpu
from pyvisor.sentry.arch.signal import frame_addresses
from pyvisor.sentry.platform.ptrace.stub import (_CODE_OFFSET, _EHDR, _PHDR, STUB_START,
                                                 TASK_SIZE)

# Host fds in every systrap stub (besides the memory file at 3).
REGION_FD = 5        # the regions' memfd
WAKE_FD = 6          # the eventfd HANDLER writes: the Sentry's event_fd()

SYS_STUB_SIZE = 0x4000       # the stub's pages (ptrace's one, and the trampolines' entries)
SYS_STUB_END = STUB_START + SYS_STUB_SIZE
_ENTRY = 16                  # bytes of one slot's entry
REGION_SIZE = 0x4000
ALTSTACK = 0x1000
REGIONS_START = STUB_START + 0x8000000         # above MAX_USER_ADDRESS: mm never maps here
MAX_REGIONS = 8192          # application threads at once, whole sandbox (twice the default
                            # --pids-limit; a region's pages exist only once touched)
REGIONS_END = REGIONS_START + MAX_REGIONS * REGION_SIZE
assert REGIONS_END <= TASK_SIZE and REGIONS_START % (REGIONS_END - REGIONS_START) == 0

OFF_STATE, OFF_UC, OFF_STACK, OFF_TID, OFF_SPIN = 0x00, 0x18, 0x20, 0x40, 0x44
OFF_KIND, OFF_PEND, OFF_APPSP, OFF_RETIP = 0x48, 0x4C, 0x50, 0x58
KIND_SIGNAL, KIND_FAST = 1, 2       # how the thread stopped: in the handler, in a trampoline
# Where the host kernel puts the signal frame and its XSAVE image in a region (the top of
# the altstack; SS_AUTODISARM makes it the same place every time).
FRAME_OFF, FP_OFF = frame_addresses(REGION_SIZE, fpu.FRAME_BYTES)
STATE_NEW, STATE_STOPPED, STATE_RUN, STATE_EXIT, STATE_ESCALATE = 0, 1, 2, 3, 4
# The trampoline's stack (below the altstack: a signal there must not look nested), its
# XSAVE image of the thread's FP state at a fast stop, and the FP image the Sentry wants
# loaded at the next resume (PEND): between the altstack's bottom and the host's frame.
FAST_TOP = 0xF00
FASTFP_OFF = ALTSTACK
PENDFP_OFF = ALTSTACK + ((fpu.FRAME_BYTES + 63) & ~63)
assert PENDFP_OFF + fpu.FRAME_BYTES <= FRAME_OFF and FASTFP_OFF % 64 == 0

# The trampoline table (syscall-site patching): below the lowest address mm lets the
# application map (MMAP_MIN_ADDR, 0x10000), so it never collides with application memory,
# and below 2 GiB, so a 7-byte `jmp *ABS32` reaches its slots.  TABLE holds one pointer
# per slot (to the slot's entry in the stub, the same in every process: one page of the
# regions memfd, mapped read-only and private); TABLE_INFO two words per slot, written
# by the Sentry when it patches a site: the return address (the site + 7) and
# (slot + 1) << 32 | syscall number.
TABLE_ADDR = 0xC000
MAX_SLOTS = 512
GEN_SLOTS = 128             # the last ones: for `mov 8(%rsp),%r9; syscall` (glibc's syscall())
GEN_FLAG = 0x10000          # r11 of such a slot's entry: 2 * slot | GEN_FLAG
TABLE_INFO = TABLE_ADDR + 8 * MAX_SLOTS
TABLE_SIZE = 8 * MAX_SLOTS + 16 * MAX_SLOTS
assert TABLE_SIZE % 0x1000 == 0 and TABLE_ADDR + TABLE_SIZE <= 0x10000

# The signals that stop an application thread.  SIGUSR2 is the Sentry's interrupt
# (Platform.interrupt: tgkill); nothing else sends it (the application cannot).
SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGUSR2, SIGSEGV, SIGSYS = 4, 5, 7, 8, 12, 11, 31
SIG_INTERRUPT = SIGUSR2
SIGNALS = (SIGSYS, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIG_INTERRUPT)
_SA_SIGINFO, _SA_ONSTACK, _SA_RESTORER = 0x4, 0x08000000, 0x04000000

# The registers, in user_regs_struct's layout (arch.Registers), at OFF_REGS: the handler
# copies them out of the ucontext at a stop and back in before it returns, so the Sentry
# moves them with one memmove each way (no field-by-field Python).
OFF_REGS = 0x80
_URS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
        "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base",
        "gs_base", "ds", "es", "fs", "gs")
REGS_SIZE = 8 * len(_URS)
_SC_GREGS = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx",
             "rdx", "rax", "rcx", "rsp", "rip", "eflags")    # struct sigcontext order
_UC_MCONTEXT = 40                # ucontext.uc_mcontext
_SC_CS, _SC_SS = 144, 150        # sigcontext.cs, .ss (u16)
_UC_SIGMASK = 296                # ucontext.uc_sigmask
assert OFF_REGS + REGS_SIZE <= ALTSTACK


def _urs(name: str) -> int:
    return OFF_REGS + 8 * _URS.index(name)


class _A:
    """A tiny x86-64 assembler: raw bytes, rel8/rel32 jumps to labels, and the few
    [base + disp32] moves the handler and the trampoline need."""

    def __init__(self) -> None:
        self.c = bytearray()
        self.at: dict[str, int] = {}
        self.fix: list[tuple[int, str, int]] = []
        self.holes: list[tuple[int, str]] = []

    def __iadd__(self, b: bytes) -> _A:
        self.c += b
        return self

    def label(self, name: str) -> None:
        self.at[name] = len(self.c)

    def hole(self, label: str) -> None:
        """A 32-bit immediate: label's offset from label "fast" (the trampoline)."""
        self.holes.append((len(self.c), label))
        self.c += bytes(4)

    def jump(self, opcode: bytes, label: str, size: int = 4) -> None:
        self.c += opcode
        self.fix.append((len(self.c), label, size))
        self.c += bytes(size)

    def _mem(self, op: int, reg: int, base: int, disp: int, w: bool = True) -> None:
        assert base & 7 != 4
        rex = (0x48 if w else 0x40) | ((reg >> 3) << 2) | (base >> 3)
        if rex != 0x40:
            self.c.append(rex)
        self.c += bytes([op, 0x80 | ((reg & 7) << 3) | (base & 7)]) + struct.pack("<i", disp)

    def st(self, reg: int, base: int, disp: int) -> None:      # mov [base+disp], reg
        self._mem(0x89, reg, base, disp)

    def ld(self, reg: int, base: int, disp: int) -> None:      # mov reg, [base+disp]
        self._mem(0x8B, reg, base, disp)

    def lea(self, reg: int, base: int, disp: int) -> None:     # lea reg, [base+disp]
        self._mem(0x8D, reg, base, disp)

    def finish(self) -> bytes:
        for pos, label, size in self.fix:
            rel = self.at[label] - (pos + size)
            self.c[pos:pos + size] = struct.pack("<b" if size == 1 else "<i", rel)
        for pos, label in self.holes:
            self.c[pos:pos + 4] = struct.pack("<i", self.at[label] - self.at["fast"])
        return bytes(self.c)


_RAX, _RCX, _RDX, _RBX, _RSP, _RBP, _RSI, _RDI = range(8)
_R8, _R9, _R10, _R11, _R12, _R13, _R14, _R15 = range(8, 16)
_GPR = {"rax": _RAX, "rcx": _RCX, "rdx": _RDX, "rbx": _RBX, "rbp": _RBP, "rsi": _RSI,
        "rdi": _RDI, "r8": _R8, "r9": _R9, "r10": _R10, "r11": _R11, "r12": _R12,
        "r13": _R13, "r14": _R14, "r15": _R15}


def _wait_loop(a: _A, p: str) -> None:
    """[rbx] = STOPPED is done; wake the Sentry (write WAKE_FD), spin, then FUTEX_WAIT
    until [rbx] != STOPPED; falls through to label p+"check"."""
    a += b"\xb8" + struct.pack("<I", _NR_WRITE)              # write(WAKE_FD, &one, 8)
    a += b"\xbf" + struct.pack("<I", WAKE_FD)
    a.jump(b"\x48\x8d\x35", "one")                          # lea rsi, [rip+one]
    a += b"\xba\x08\0\0\0"
    a.label(p + "write")
    a += b"\x0f\x05"
    a += b"\x8b\x4b" + bytes([OFF_SPIN])                    # mov ecx, [rbx+OFF_SPIN]
    a += b"\x85\xc9"                                         # test ecx, ecx
    a.jump(b"\x74", p + "wait", 1)                            # jz wait
    a.label(p + "spin")
    a += b"\x83\x3b" + bytes([STATE_STOPPED])               # cmp dword [rbx], STOPPED
    a.jump(b"\x75", p + "check", 1)                           # jne check
    a += b"\xf3\x90\xff\xc9"                                # pause; dec ecx
    a.jump(b"\x75", p + "spin", 1)                            # jnz spin
    a.label(p + "wait")
    a += b"\x8b\x03\x83\xf8" + bytes([STATE_STOPPED])       # mov eax, [rbx]; cmp eax, 1
    a.jump(b"\x75", p + "check", 1)
    a += b"\xb8" + struct.pack("<I", _NR_FUTEX)              # futex(rbx, WAIT, STOPPED, 0)
    a += b"\x48\x89\xdf\x31\xf6"                            # mov rdi, rbx; xor esi, esi
    a += b"\xba" + struct.pack("<I", STATE_STOPPED)
    a += b"\x45\x31\xd2"                                    # xor r10d, r10d
    a.label(p + "futex")
    a += b"\x0f\x05"
    a.jump(b"\xeb", p + "wait", 1)
    a.label(p + "check")


def _handler(frame_off: int) -> tuple[bytes, dict[str, int]]:
    """HANDLER's code (position independent) and the offsets of its parts: the signal
    handler, then the trampoline's common part (TRAMPOLINE), all within the range whose
    syscall instructions the filters let through.

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
    a = _A()
    d32 = _d32
    a += b"\x48\x89\xe3"                                   # mov rbx, rsp
    a += b"\x48\x81\xe3" + d32(-REGION_SIZE)               # and rbx, -REGION_SIZE
    a += b"\x48\x89\x53" + bytes([OFF_UC])                 # mov [rbx+OFF_UC], rdx
    a.ld(_RAX, _RDX, _UC_MCONTEXT + 8 * _SC_GREGS.index("rip"))
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
        a.ld(_RAX, _RDX, _UC_MCONTEXT + 8 * i)
        a.st(_RAX, _RBX, _urs(name))
    for sc, name in ((_SC_CS, "cs"), (_SC_SS, "ss")):
        a += b"\x0f\xb7\x82" + d32(_UC_MCONTEXT + sc)      # movzx eax, word [rdx+sc.seg]
        a.st(_RAX, _RBX, _urs(name))
    a += b"\xf3\x48\x0f\xae\xc0"                            # rdfsbase rax
    a.st(_RAX, _RBX, _urs("fs_base"))
    a += b"\xf3\x48\x0f\xae\xc8"                            # rdgsbase rax
    a += b"\x48\x39\xd8"                                    # cmp rax, rbx
    a += b"\x75\x02\x31\xc0"                                # jne +2; xor eax, eax
    a.st(_RAX, _RBX, _urs("gs_base"))
    a.label("stop")
    a += b"\xc7\x03" + struct.pack("<I", STATE_STOPPED)     # mov dword [rbx], STOPPED
    _wait_loop(a, "")
    a += b"\x8b\x03\x83\xf8" + bytes([STATE_RUN])           # mov eax, [rbx]; cmp eax, RUN
    a.jump(b"\x0f\x85", "leave")                             # jne leave
    a.label("resume")
    a += b"\x83\x7b" + bytes([OFF_PEND]) + b"\x00"           # cmp dword [rbx+OFF_PEND], 0
    a.jump(b"\x74", "no_pend", 1)
    a.lea(_RSI, _RBX, PENDFP_OFF)
    a.lea(_RDI, _RBX, FP_OFF)
    a += b"\xb9" + struct.pack("<I", fpu.FRAME_BYTES)        # mov ecx, FRAME_BYTES
    a += b"\xf3\xa4"                                         # rep movsb
    a += b"\xc7\x43" + bytes([OFF_PEND]) + struct.pack("<I", 0)
    a.label("no_pend")
    a.lea(_RDX, _RBX, frame_off + 8)                         # lea rdx, [rbx+uc]
    for i, name in enumerate(_SC_GREGS):
        a.ld(_RAX, _RBX, _urs(name))
        a.st(_RAX, _RDX, _UC_MCONTEXT + 8 * i)
    for sc, name in ((_SC_CS, "cs"), (_SC_SS, "ss")):
        a.ld(_RAX, _RBX, _urs(name))
        a += b"\x66\x89\x82" + d32(_UC_MCONTEXT + sc)      # mov [rdx+sc.seg], ax
    a += b"\x48\xc7\x82" + d32(_UC_SIGMASK) + d32(0)      # no host signal blocked
    a.ld(_RAX, _RBX, _urs("fs_base"))
    a += b"\xf3\x48\x0f\xae\xd0"                            # wrfsbase rax
    a.ld(_RAX, _RBX, _urs("gs_base"))
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
    _trampoline(a)
    a.label("end")                                   # every syscall the filters allow is before
    a += b"\x0f\x05"                                         # FALLBACK: syscall (traps)
    a.label("fallback_end")
    a += b"\x0f\x0b"                                         # ud2
    while len(a.c) % 8:
        a += b"\xcc"
    a.label("one")
    a += struct.pack("<Q", 1)
    # A region's address: REGIONS_START's bits outside the region-number bits, low bits 0.
    bits = (REGIONS_END - REGIONS_START - 1) & ~(REGION_SIZE - 1)
    a.label("mask0")                     # bits a region's address has 0
    a += struct.pack("<Q", ~bits & ~REGIONS_START & (1 << 64) - 1)
    a.label("mask1")                     # bits it has 1
    a += struct.pack("<Q", ~bits & REGIONS_START)
    return a.finish(), a.at


def _d32(v: int) -> bytes:
    return struct.pack("<i", v)


def _trampoline(a: _A) -> None:
    """The trampolines' common part (labels "fast" and "fast_gen").  A patched site jumps
    through its slot (TABLE) to its entry, which sets r11d = 2 * slot and jumps here
    ("fast" for a `mov $nr,%eax; syscall` site; "fast_gen" for glibc's syscall(3)
    `mov 8(%rsp),%r9; syscall`, after doing that mov: rax holds the number).  Entered with
    the application's registers but rcx, r11 (a syscall clobbers them) and rax (for
    "fast"); flags untouched until pushfq.

        gs base not a region of this layout (checked without touching the flags:
            rdgsbase, pext, jrcxz): rax = the slot's FALLBACK word ((slot + 1) << 32 |
            nr; for "fast_gen" plus rax), jump to FALLBACK: an ordinary trapping syscall
        rcx = the region (gs base); [rcx+APPSP] = rsp; rsp = FAST_TOP; pushfq
        REGS = the registers; rip = rcx = the slot's return address; r11 = eflags;
            rax = nr ("fast": the slot's; "fast_gen": rax); fs base; gs base 0; cs, ss
        xsave64 FASTFP; KIND = FAST; [rbx] = STOPPED; wake, spin, wait as the handler
        RUN:      fs base, rsp, eflags, rip, every other register from REGS; popfq;
                  pop rsp; jmp [gs:RETIP]
        ESCALATE: ud2 (the handler resumes from REGS through rt_sigreturn)
        EXIT:     exit(0)
    """
    for kind in ("fast", "fast_gen"):
        a.label(kind)
        a += b"\xf3\x48\x0f\xae\xc9"                        # rdgsbase rcx
        a.jump(b"\xc4\xe2\xf2\xf5\x0d", "mask0")             # pext rcx, rcx, [rip+mask0]
        a += b"\xe3\x05"                                     # jrcxz +5
        a.jump(b"\xe9", kind + "_fallback")
        a += b"\xf3\x48\x0f\xae\xc9"                        # rdgsbase rcx
        a += b"\x48\xf7\xd1"                                 # not rcx
        a.jump(b"\xc4\xe2\xf2\xf5\x0d", "mask1")             # pext rcx, rcx, [rip+mask1]
        a += b"\xe3\x05"                                     # jrcxz +5: a region
        a.jump(b"\xe9", kind + "_fallback")
        a.jump(b"\xe9", "region")
        a.label(kind + "_fallback")      # (inside [TRAMPOLINE, FAST_WAIT): a stop follows)
        a += b"\x41\x0f\xb7\xcb"                             # movzx ecx, r11w
        if kind == "fast":
            a += b"\x48\x8b\x04\xcd" + _d32(TABLE_INFO + 8)  # mov rax, [INFO+8 + rcx*8]
        else:
            a += b"\x48\x8b\x0c\xcd" + _d32(TABLE_INFO + 8)  # mov rcx, [INFO+8 + rcx*8]
            a += b"\x48\x8d\x04\x01"                         # lea rax, [rcx+rax]
        a.jump(b"\xe9", "end")                               # jmp FALLBACK (traps)
    a.label("region")
    a += b"\xf3\x48\x0f\xae\xc9"                            # rdgsbase rcx
    a.st(_RSP, _RCX, OFF_APPSP)
    a.lea(_RSP, _RCX, FAST_TOP)
    a += b"\x9c"                                             # pushfq
    for name in ("r15", "r14", "r13", "r12", "rbp", "rbx", "r10", "r9", "r8", "rdx", "rsi",
                 "rdi", "rax"):
        a.st(_GPR[name], _RCX, _urs(name))
    a += b"\x48\x89\xcb"                                    # mov rbx, rcx
    a += b"\x5a"                                             # pop rdx
    a.st(_RDX, _RBX, _urs("eflags"))
    a.st(_RDX, _RBX, _urs("r11"))
    a += b"\x41\x0f\xb7\xcb"                                 # movzx ecx, r11w
    a += b"\x48\x8b\x14\xcd" + _d32(TABLE_INFO)             # mov rdx, [INFO + rcx*8]
    a.st(_RDX, _RBX, _urs("rip"))
    a.st(_RDX, _RBX, _urs("rcx"))
    a += b"\x41\xf7\xc3" + struct.pack("<I", GEN_FLAG)      # test r11d, GEN_FLAG
    a.jump(b"\x75", "have_nr", 1)                             # jnz: rax is the number
    a += b"\x8b\x14\xcd" + _d32(TABLE_INFO + 8)               # mov edx, [INFO+8 + rcx*8]
    a.st(_RDX, _RBX, _urs("rax"))
    a.label("have_nr")
    a.ld(_RDX, _RBX, OFF_APPSP)
    a.st(_RDX, _RBX, _urs("rsp"))
    a += b"\x8c\xca"                                         # mov edx, cs
    a.st(_RDX, _RBX, _urs("cs"))
    a += b"\x8c\xd2"                                         # mov edx, ss
    a.st(_RDX, _RBX, _urs("ss"))
    a += b"\xf3\x48\x0f\xae\xc2"                            # rdfsbase rdx
    a.st(_RDX, _RBX, _urs("fs_base"))
    a += b"\x31\xd2"                                         # xor edx, edx
    a.st(_RDX, _RBX, _urs("gs_base"))
    a += b"\xb8\xff\xff\xff\xff\xba\xff\xff\xff\xff"          # eax = edx = -1: every component
    if fpu.HAS_XSAVE:
        a += b"\x48\x0f\xae\xa3" + _d32(FASTFP_OFF)         # xsave64 [rbx+FASTFP]
    else:
        a += b"\x48\x0f\xae\x83" + _d32(FASTFP_OFF)         # fxsave64 [rbx+FASTFP]
    a += b"\xc7\x43" + bytes([OFF_KIND]) + struct.pack("<I", KIND_FAST)
    a += b"\xc7\x03" + struct.pack("<I", STATE_STOPPED)     # mov dword [rbx], STOPPED
    a.label("fast_wait")
    _wait_loop(a, "f")
    a += b"\x8b\x03\x83\xf8" + bytes([STATE_RUN])           # mov eax, [rbx]; cmp eax, RUN
    a.jump(b"\x74", "fast_exit", 1)
    a += b"\x83\xf8" + bytes([STATE_ESCALATE])
    a.jump(b"\x0f\x85", "leave")
    a.label("esc")
    a += b"\x0f\x0b"                                         # ud2: resume by the handler
    a.label("fast_exit")
    a.ld(_RAX, _RBX, _urs("fs_base"))
    a += b"\xf3\x48\x0f\xae\xd0"                            # wrfsbase rax
    a.ld(_RAX, _RBX, _urs("rip"))
    a.st(_RAX, _RBX, OFF_RETIP)
    a.ld(_RAX, _RBX, _urs("rsp"))
    a.st(_RAX, _RBX, FAST_TOP - 8)
    a.ld(_RAX, _RBX, _urs("eflags"))
    a.st(_RAX, _RBX, FAST_TOP - 16)
    a.lea(_RSP, _RBX, FAST_TOP - 16)
    for name in ("r15", "r14", "r13", "r12", "rbp", "r11", "r10", "r9", "r8", "rax", "rcx",
                 "rdx", "rsi", "rdi", "rbx"):
        a.ld(_GPR[name], _RBX, _urs(name))
    a += b"\x9d\x5c"                                         # popfq; pop rsp
    a += b"\x65\xff\x24\x25" + _d32(OFF_RETIP)              # jmp [gs:RETIP]
    a.label("fast_exit_end")


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
    by the Sentry, as on ptrace (and its own app_filter traps even the injected ones).  Another architecture (int 0x80, 32-bit
    code) traps too: the Sentry answers ENOSYS."""
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
    # The slots' entries: r11d = 2 * slot (the index of its TABLE_INFO words), then the
    # trampoline.  No syscall instruction among them.
    while len(a.c) % 16:
        a.c += b"\xcc"
    entries = len(a.c)
    for i in range(MAX_SLOTS):
        gen = i >= MAX_SLOTS - GEN_SLOTS
        start = len(a.c)
        if gen:
            a.c += b"\x4c\x8b\x4c\x24\x08"                      # mov r9, [rsp+8]
        a.c += b"\x41\xbb" + struct.pack("<I", 2 * i | (GEN_FLAG if gen else 0))  # mov r11d
        target = handler + hat["fast_gen" if gen else "fast"]
        a.c += b"\xe9" + struct.pack("<i", target - (len(a.c) + 5))
        a.c += b"\xcc" * (_ENTRY - (len(a.c) - start))
    slots = b"".join(struct.pack("<Q", code_addr + entries + _ENTRY * i)
                     for i in range(MAX_SLOTS))
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
ENTRIES = int(_C["entries"])           # slot i's entry: ENTRIES + _ENTRY * i
TABLE_SLOTS = _C["slots"]               # TABLE's contents (the first 8 * MAX_SLOTS bytes)
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
