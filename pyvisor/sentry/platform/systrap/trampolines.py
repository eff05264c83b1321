"""The stub side of syscall-site patching: the trampoline table, the slots' entries and
the trampolines' common code, through which a patched syscall site stops without a
signal (README, *Syscall-site patching*; the Sentry's side is patching.py).

gVisor: pkg/sentry/platform/systrap/usertrap (the trap table) and its sysmsg (the
handler a patched site reaches).

A patched site is `jmp *(TABLE_ADDR + 8 * slot)`.  The table's first part (one pointer
per slot, the same in every process) points each slot at its 16-byte entry in the
stub, which sets r11d = 2 * slot (the index of its TABLE_INFO words) and jumps to the
common trampoline ("fast"; "fast_gen" for glibc's syscall(3) sites).  The trampoline
code is assembled into the handler's code (stub.py), inside the range whose syscall
instructions the filters allow: it saves the thread's state into its region
(region.py) and stops as the handler does (`region.wait_loop`).
"""

from __future__ import annotations

import struct

from pyvisor.sentry.arch import fpu
from pyvisor.sentry.platform.systrap.asm import (GPR, RBX, RCX, RDX, RSP, RAX, Assembler,
                                                 d32)
from pyvisor.sentry.platform.systrap.region import (FAST_TOP, FASTFP_OFF, KIND_FAST,
                                                    OFF_APPSP, OFF_KIND, OFF_RETIP,
                                                    REGION_SIZE, REGIONS_END,
                                                    REGIONS_START, STATE_ESCALATE,
                                                    STATE_RUN, STATE_STOPPED, reg_off,
                                                    wait_loop)

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
ENTRY_SIZE = 16             # bytes of one slot's entry


def emit(a: Assembler) -> None:
    """The trampolines' common part (labels "fast" and "fast_gen"), into the handler's
    code; it jumps to the handler's labels "end" (FALLBACK) and "leave" (exit), and
    reads `emit_data`'s "mask0" and "mask1".  A patched site jumps through its slot
    (TABLE) to its entry, which sets r11d = 2 * slot and jumps here ("fast" for a
    `mov $nr,%eax; syscall` site; "fast_gen" for glibc's syscall(3)
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
            a += b"\x48\x8b\x04\xcd" + d32(TABLE_INFO + 8)   # mov rax, [INFO+8 + rcx*8]
        else:
            a += b"\x48\x8b\x0c\xcd" + d32(TABLE_INFO + 8)   # mov rcx, [INFO+8 + rcx*8]
            a += b"\x48\x8d\x04\x01"                         # lea rax, [rcx+rax]
        a.jump(b"\xe9", "end")                               # jmp FALLBACK (traps)
    a.label("region")
    a += b"\xf3\x48\x0f\xae\xc9"                            # rdgsbase rcx
    a.st(RSP, RCX, OFF_APPSP)
    a.lea(RSP, RCX, FAST_TOP)
    a += b"\x9c"                                             # pushfq
    for name in ("r15", "r14", "r13", "r12", "rbp", "rbx", "r10", "r9", "r8", "rdx", "rsi",
                 "rdi", "rax"):
        a.st(GPR[name], RCX, reg_off(name))
    a += b"\x48\x89\xcb"                                    # mov rbx, rcx
    a += b"\x5a"                                             # pop rdx
    a.st(RDX, RBX, reg_off("eflags"))
    a.st(RDX, RBX, reg_off("r11"))
    a += b"\x41\x0f\xb7\xcb"                                 # movzx ecx, r11w
    a += b"\x48\x8b\x14\xcd" + d32(TABLE_INFO)              # mov rdx, [INFO + rcx*8]
    a.st(RDX, RBX, reg_off("rip"))
    a.st(RDX, RBX, reg_off("rcx"))
    a += b"\x41\xf7\xc3" + struct.pack("<I", GEN_FLAG)      # test r11d, GEN_FLAG
    a.jump(b"\x75", "have_nr", 1)                             # jnz: rax is the number
    a += b"\x8b\x14\xcd" + d32(TABLE_INFO + 8)                # mov edx, [INFO+8 + rcx*8]
    a.st(RDX, RBX, reg_off("rax"))
    a.label("have_nr")
    a.ld(RDX, RBX, OFF_APPSP)
    a.st(RDX, RBX, reg_off("rsp"))
    a += b"\x8c\xca"                                         # mov edx, cs
    a.st(RDX, RBX, reg_off("cs"))
    a += b"\x8c\xd2"                                         # mov edx, ss
    a.st(RDX, RBX, reg_off("ss"))
    a += b"\xf3\x48\x0f\xae\xc2"                            # rdfsbase rdx
    a.st(RDX, RBX, reg_off("fs_base"))
    a += b"\x31\xd2"                                         # xor edx, edx
    a.st(RDX, RBX, reg_off("gs_base"))
    a += b"\xb8\xff\xff\xff\xff\xba\xff\xff\xff\xff"          # eax = edx = -1: every component
    if fpu.HAS_XSAVE:
        a += b"\x48\x0f\xae\xa3" + d32(FASTFP_OFF)          # xsave64 [rbx+FASTFP]
    else:
        a += b"\x48\x0f\xae\x83" + d32(FASTFP_OFF)          # fxsave64 [rbx+FASTFP]
    a += b"\xc7\x43" + bytes([OFF_KIND]) + struct.pack("<I", KIND_FAST)
    a += b"\xc7\x03" + struct.pack("<I", STATE_STOPPED)     # mov dword [rbx], STOPPED
    a.label("fast_wait")
    wait_loop(a, "f")
    a += b"\x8b\x03\x83\xf8" + bytes([STATE_RUN])           # mov eax, [rbx]; cmp eax, RUN
    a.jump(b"\x74", "fast_exit", 1)
    a += b"\x83\xf8" + bytes([STATE_ESCALATE])
    a.jump(b"\x0f\x85", "leave")
    a.label("esc")
    a += b"\x0f\x0b"                                         # ud2: resume by the handler
    a.label("fast_exit")
    a.ld(RAX, RBX, reg_off("fs_base"))
    a += b"\xf3\x48\x0f\xae\xd0"                            # wrfsbase rax
    a.ld(RAX, RBX, reg_off("rip"))
    a.st(RAX, RBX, OFF_RETIP)
    a.ld(RAX, RBX, reg_off("rsp"))
    a.st(RAX, RBX, FAST_TOP - 8)
    a.ld(RAX, RBX, reg_off("eflags"))
    a.st(RAX, RBX, FAST_TOP - 16)
    a.lea(RSP, RBX, FAST_TOP - 16)
    for name in ("r15", "r14", "r13", "r12", "rbp", "r11", "r10", "r9", "r8", "rax", "rcx",
                 "rdx", "rsi", "rdi", "rbx"):
        a.ld(GPR[name], RBX, reg_off(name))
    a += b"\x9d\x5c"                                         # popfq; pop rsp
    a += b"\x65\xff\x24\x25" + d32(OFF_RETIP)               # jmp [gs:RETIP]
    a.label("fast_exit_end")


def emit_data(a: Assembler) -> None:
    """The trampolines' constants (8-byte aligned, among the handler's data): the masks
    that tell a region's address (REGIONS_START's bits outside the region-number bits,
    low bits 0) from any other gs base."""
    bits = (REGIONS_END - REGIONS_START - 1) & ~(REGION_SIZE - 1)
    a.label("mask0")                     # bits a region's address has 0
    a += struct.pack("<Q", ~bits & ~REGIONS_START & (1 << 64) - 1)
    a.label("mask1")                     # bits it has 1
    a += struct.pack("<Q", ~bits & REGIONS_START)


def slot_entries(at: int, fast: int, fast_gen: int) -> bytes:
    """The slots' entries, to be placed at offset `at` of the stub's code, whose "fast"
    and "fast_gen" are at those offsets: entry i (ENTRY_SIZE bytes) sets
    r11d = 2 * i (| GEN_FLAG for the last GEN_SLOTS, after their `mov 8(%rsp),%r9`) and
    jumps to the trampoline.  No syscall instruction among them."""
    c = bytearray()
    for i in range(MAX_SLOTS):
        gen = i >= MAX_SLOTS - GEN_SLOTS
        start = len(c)
        if gen:
            c += b"\x4c\x8b\x4c\x24\x08"                        # mov r9, [rsp+8]
        c += b"\x41\xbb" + struct.pack("<I", 2 * i | (GEN_FLAG if gen else 0))  # mov r11d
        target = fast_gen if gen else fast
        c += b"\xe9" + struct.pack("<i", target - (at + len(c) + 5))
        c += b"\xcc" * (ENTRY_SIZE - (len(c) - start))
    return bytes(c)


def table_slots(entries: int) -> bytes:
    """The table's first part (8 * MAX_SLOTS bytes): slot i's pointer to its entry, for
    entries at address `entries`."""
    return b"".join(struct.pack("<Q", entries + ENTRY_SIZE * i) for i in range(MAX_SLOTS))
