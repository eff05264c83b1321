"""A tiny x86-64 assembler for the systrap stub's hand-written code: the signal handler
(stub.py) and the trampolines (trampolines.py), assembled as one piece of code.

Raw bytes, rel8/rel32 jumps to labels (resolved by `finish`), and the few
[base + disp32] moves the handler and the trampolines need.  No instruction selection:
the caller writes the encodings, commented with their mnemonics.
"""

from __future__ import annotations

import struct

RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI = range(8)
R8, R9, R10, R11, R12, R13, R14, R15 = range(8, 16)
GPR = {"rax": RAX, "rcx": RCX, "rdx": RDX, "rbx": RBX, "rbp": RBP, "rsi": RSI,
       "rdi": RDI, "r8": R8, "r9": R9, "r10": R10, "r11": R11, "r12": R12,
       "r13": R13, "r14": R14, "r15": R15}


def d32(v: int) -> bytes:
    """A signed 32-bit immediate or displacement."""
    return struct.pack("<i", v)


class Assembler:
    """Code with labels: `jump` leaves a rel8/rel32 to a label, `hole` a label's offset
    from label "fast" (the trampoline); `finish` fills both in."""

    def __init__(self) -> None:
        self.c = bytearray()
        self.at: dict[str, int] = {}
        self.fix: list[tuple[int, str, int]] = []
        self.holes: list[tuple[int, str]] = []

    def __iadd__(self, b: bytes) -> Assembler:
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
