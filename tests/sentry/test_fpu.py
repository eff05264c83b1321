"""The XSAVE frame image (arch/fpu.py): sizes from CPUID, the frame's software bytes,
and what rt_sigreturn makes of good and bad frames (tests/programs/avx_signal.c
checks it end to end, natively and in the sandbox)."""

from __future__ import annotations

import struct

from pyvisor.sentry.arch import fpu


def test_sizes() -> None:
    assert fpu.HAS_XSAVE, "this host's CPU has XSAVE"
    assert fpu.XCR0 & 0x3 == 0x3
    assert fpu.USER_XFEATURES & ~fpu.XCR0 == 0
    assert 576 <= fpu.FRAME_SIZE <= fpu.REGSET_SIZE
    if fpu.XCR0 & 4:                           # AVX: its 256 bytes are in the frame
        assert fpu.FRAME_SIZE >= 576 + 256


def _state(bv: int) -> bytes:
    s = bytearray(fpu.initial_state())
    s[160:176] = bytes(range(16))              # xmm0
    struct.pack_into("<Q", s, fpu.XSAVE_HDR_OFFSET, bv)
    if fpu.FRAME_SIZE > 576:
        s[576:592] = b"\xab" * 16              # ymm0's upper half
    return bytes(s)


def test_frame_round_trip() -> None:
    state = _state(fpu.USER_XFEATURES)
    frame = fpu.to_frame(state)
    assert len(frame) == fpu.FRAME_BYTES
    magic1, ext, xfeatures, size = struct.unpack_from("<IIQI", frame, 464)
    assert (magic1, ext, xfeatures, size) == (fpu.FP_XSTATE_MAGIC1, fpu.FRAME_SIZE + 4,
                                              fpu.USER_XFEATURES, fpu.FRAME_SIZE)
    assert int.from_bytes(frame[-4:], "little") == fpu.FP_XSTATE_MAGIC2
    assert fpu.frame_xstate_size(frame[:512]) == fpu.FRAME_SIZE
    back = fpu.from_frame(frame[:fpu.FRAME_SIZE], xfeatures)
    assert back is not None and len(back) == fpu.REGSET_SIZE
    assert back[:464] == state[:464] and back[576:fpu.FRAME_SIZE] == state[576:fpu.FRAME_SIZE]
    assert struct.unpack_from("<Q", back, 512)[0] == fpu.USER_XFEATURES


def test_bad_frames() -> None:
    frame = bytearray(fpu.to_frame(_state(fpu.USER_XFEATURES)))
    # Software bytes that do not add up: only the legacy part counts.
    bad = bytearray(frame)
    struct.pack_into("<I", bad, 468, 12345)
    assert fpu.frame_xstate_size(bytes(bad[:512])) is None
    legacy_only = fpu.from_frame(bytes(frame[:512]), 0)
    assert legacy_only is not None
    assert struct.unpack_from("<Q", legacy_only, 512)[0] == fpu.XFEATURE_MASK_FPSSE
    # Headers XRSTOR faults on: a compacted image, reserved bytes, features not enabled.
    for off, value in ((520, 1 << 63), (540, 1), (512, 1 << 62)):
        h = bytearray(frame)
        struct.pack_into("<Q", h, off, value)
        assert fpu.from_frame(bytes(h[:fpu.FRAME_SIZE]), fpu.USER_XFEATURES) is None
    # Features the frame does not ask for get their init state.
    some = fpu.from_frame(bytes(frame[:fpu.FRAME_SIZE]), fpu.XFEATURE_MASK_FPSSE)
    assert some is not None and struct.unpack_from("<Q", some, 512)[0] == 3
