"""amd64 FP/extended state: the XSAVE image of whatever the CPU has (x87, SSE, AVX,
AVX-512, ...), as ptrace's NT_X86_XSTATE regset and signal frames hold it.

Linux: arch/x86/include/asm/fpu/types.h (struct fxregs_state, struct xregs_state),
arch/x86/include/uapi/asm/sigcontext.h (struct _fpx_sw_bytes),
arch/x86/kernel/fpu/signal.c, arch/x86/kernel/fpu/xstate.c.

Two sizes matter.  The regset (REGSET_SIZE) is every component the OS enabled in
XCR0, in the standard (non-compacted) format: what PTRACE_GETREGSET returns and
PTRACE_SETREGSET insists on.  The signal frame (FRAME_SIZE) holds the components an
application may use without asking (USER_XFEATURES: XCR0 without the dynamically
enabled AMX tile data, which needs arch_prctl(ARCH_REQ_XCOMP_PERM), not offered in
the sandbox), as Linux's frames do for such a process.  A frame image is the regset's
prefix with the software-reserved bytes (FP_XSTATE_MAGIC1, sizes, features) filled in
and FP_XSTATE_MAGIC2 after it.

Without XSAVE (very old CPUs) everything degrades to the 512-byte fxsave image.
"""

from __future__ import annotations

import struct

from pyvisor.sentry.arch import native

FXSAVE_SIZE = 512
FXSAVE_ALIGN = 16          # fxrstor faults (#GP) on a less aligned image
XSAVE_ALIGN = 64
MXCSR_OFFSET = 24
MXCSR_DEFAULT = 0x1F80
FCW_DEFAULT = 0x37F

# struct _fpx_sw_bytes, in the fxsave image's software-reserved bytes 464..511.
SW_BYTES_OFFSET = 464
_SW_BYTES = struct.Struct("<IIQI")     # magic1, extended_size, xfeatures, xstate_size
FP_XSTATE_MAGIC1 = 0x46505853
FP_XSTATE_MAGIC2 = 0x46505845
FP_XSTATE_MAGIC2_SIZE = 4
# The XSAVE header after the legacy area: xstate_bv, xcomp_bv, 48 reserved bytes.
XSAVE_HDR_OFFSET = 512
XSAVE_HDR_SIZE = 64
XFEATURE_MASK_FPSSE = 0x3
XFEATURE_MASK_XTILE_DATA = 1 << 18      # dynamically enabled: not in user frames


def _probe() -> tuple[bool, int, int, int, int]:
    """(has_xsave, xcr0, user_xfeatures, frame_size, regset_size) from CPUID."""
    _, _, ecx, _ = native.cpuid(1)
    if not ecx & (1 << 27):                     # OSXSAVE: the OS uses XSAVE
        return False, 0, 0, FXSAVE_SIZE, FXSAVE_SIZE
    xcr0 = native.xgetbv(0)
    user = xcr0 & ~XFEATURE_MASK_XTILE_DATA
    frame = regset = XSAVE_HDR_OFFSET + XSAVE_HDR_SIZE
    for i in range(2, 64):
        if xcr0 & (1 << i):
            size, offset, _, _ = native.cpuid(0xD, i)
            regset = max(regset, offset + size)
            if user & (1 << i):
                frame = max(frame, offset + size)
    return True, xcr0, user, frame, regset


HAS_XSAVE, XCR0, USER_XFEATURES, FRAME_SIZE, REGSET_SIZE = _probe()
# Bytes a signal frame reserves for the FP state (the image plus MAGIC2).
FRAME_BYTES = FRAME_SIZE + FP_XSTATE_MAGIC2_SIZE if HAS_XSAVE else FXSAVE_SIZE
FRAME_ALIGN = XSAVE_ALIGN


def initial_fxsave() -> bytes:
    """The fxsave image of a reset FPU (execve, rt_sigreturn with no FP state):
    FCW 0x37f, MXCSR 0x1f80, everything else zero."""
    buf = bytearray(FXSAVE_SIZE)
    buf[0:2] = FCW_DEFAULT.to_bytes(2, "little")
    buf[MXCSR_OFFSET:MXCSR_OFFSET + 4] = MXCSR_DEFAULT.to_bytes(4, "little")
    buf[28:32] = (0xFFFF).to_bytes(4, "little")   # MXCSR_MASK (ignored on restore)
    return bytes(buf)


def initial_state() -> bytes:
    """The whole state of a reset FPU, in the platform's format (REGSET_SIZE bytes):
    x87 and SSE explicit (so MXCSR is loaded), every other component in its init
    state (its xstate_bv bit clear)."""
    if not HAS_XSAVE:
        return initial_fxsave()
    buf = bytearray(REGSET_SIZE)
    buf[:FXSAVE_SIZE] = initial_fxsave()
    struct.pack_into("<Q", buf, XSAVE_HDR_OFFSET, XFEATURE_MASK_FPSSE)
    return bytes(buf)


def to_frame(state: bytes) -> bytes:
    """The signal-frame image (FRAME_BYTES) of a state read from the platform.
    Linux: copy_fpstate_to_sigframe, save_xstate_epilog."""
    if not HAS_XSAVE:
        return state[:FXSAVE_SIZE]
    buf = bytearray(state[:FRAME_SIZE].ljust(FRAME_SIZE, b"\0"))
    _SW_BYTES.pack_into(buf, SW_BYTES_OFFSET, FP_XSTATE_MAGIC1,
                        FRAME_SIZE + FP_XSTATE_MAGIC2_SIZE, USER_XFEATURES, FRAME_SIZE)
    buf[SW_BYTES_OFFSET + _SW_BYTES.size:FXSAVE_SIZE] = bytes(
        FXSAVE_SIZE - SW_BYTES_OFFSET - _SW_BYTES.size)
    (bv,) = struct.unpack_from("<Q", buf, XSAVE_HDR_OFFSET)
    # x87/SSE are always in the frame, as XSAVE writes the legacy area (the kernel
    # sets them too: a restore then loads MXCSR and the xmm registers).
    struct.pack_into("<QQ", buf, XSAVE_HDR_OFFSET, (bv & USER_XFEATURES) | XFEATURE_MASK_FPSSE,
                     0)
    buf[XSAVE_HDR_OFFSET + 16:XSAVE_HDR_OFFSET + XSAVE_HDR_SIZE] = bytes(XSAVE_HDR_SIZE - 16)
    return bytes(buf) + FP_XSTATE_MAGIC2.to_bytes(4, "little")


def frame_xstate_size(sw: bytes) -> int | None:
    """The size of the XSAVE image a frame says it holds (from its first 512 bytes),
    or None if its software bytes do not describe a valid extended frame (then only
    the legacy fxsave part counts).  Linux: check_xstate_in_sigframe."""
    if not HAS_XSAVE:
        return None
    magic1, ext, _, size = _SW_BYTES.unpack_from(sw, SW_BYTES_OFFSET)
    if magic1 != FP_XSTATE_MAGIC1 or size < XSAVE_HDR_OFFSET + XSAVE_HDR_SIZE or \
            size > REGSET_SIZE or ext != size + FP_XSTATE_MAGIC2_SIZE:
        return None
    return size


def from_frame(image: bytes, xfeatures: int) -> bytes | None:
    """The platform state (REGSET_SIZE bytes) rt_sigreturn loads from a frame image:
    `image` is the frame's XSAVE image (or just its 512-byte fxsave part, with
    `xfeatures` 0), `xfeatures` what its software bytes ask for.  Components not
    asked for, or beyond the image, get their init state.  None if the header is
    one XRSTOR would fault on (#GP: reserved bits, a compacted image, features the
    OS did not enable).  Linux: __fpu_restore_sig, validate_user_xstate_header."""
    if not HAS_XSAVE:
        return image[:FXSAVE_SIZE]
    buf = bytearray(REGSET_SIZE)
    if len(image) <= FXSAVE_SIZE or not xfeatures:
        buf[:FXSAVE_SIZE] = image[:FXSAVE_SIZE]
        bv = XFEATURE_MASK_FPSSE
    else:
        bv, comp = struct.unpack_from("<QQ", image, XSAVE_HDR_OFFSET)
        if comp or any(image[XSAVE_HDR_OFFSET + 16:XSAVE_HDR_OFFSET + XSAVE_HDR_SIZE]) or \
                bv & ~XCR0:
            return None
        n = min(len(image), REGSET_SIZE)
        buf[:n] = image[:n]
        # Only what the frame asks for and may hold; FP/SSE always (the legacy area
        # is loaded as fxrstor would).
        bv = (bv & xfeatures & USER_XFEATURES) | XFEATURE_MASK_FPSSE
        for i in range(2, 64):
            if bv & (1 << i):
                size, offset = _LAYOUT[i][:2]
                if offset + size > len(image):
                    bv &= ~(1 << i)                      # not in the image: init state
    buf[SW_BYTES_OFFSET:FXSAVE_SIZE] = bytes(FXSAVE_SIZE - SW_BYTES_OFFSET)
    struct.pack_into("<QQ", buf, XSAVE_HDR_OFFSET, bv, 0)
    buf[XSAVE_HDR_OFFSET + 16:XSAVE_HDR_OFFSET + XSAVE_HDR_SIZE] = bytes(XSAVE_HDR_SIZE - 16)
    return bytes(buf)


def _layout() -> dict[int, tuple[int, int, int, int]]:
    if not HAS_XSAVE:
        return {}
    return {i: native.cpuid(0xD, i) for i in range(2, 64) if XCR0 & (1 << i)}


_LAYOUT = _layout()
