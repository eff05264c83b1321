"""io_uring: submission and completion rings shared with the application.
Linux: io_uring/ (io_uring.c, rw.c, nop.c, register.c).

The rings live in the memory file: one extent holds both ring headers, the
CQE array and the SQ index array (Linux's struct io_rings, so the offsets are
Linux's and IORING_FEAT_SINGLE_MMAP holds), another the SQE array.  mmap of
the ring fd at IORING_OFF_SQ_RING / IORING_OFF_CQ_RING / IORING_OFF_SQES maps
those extents MAP_SHARED into the application, and the Sentry reads and writes
them through its own mapping of the memory file, so both always see one copy.

Submission happens in io_uring_enter, in ring order, on the calling task:
each request runs to completion there (there are no kernel worker threads)
and its CQE is posted at once, so IOSQE_IO_DRAIN and IOSQE_ASYNC need nothing
more and IOSQE_IO_LINK only has to cancel the rest of a chain after a failure.
A read or write that would block (a pipe or socket with nothing to give)
completes with -EAGAIN instead of waiting for readiness.
The Sentry keeps its own SQ head and CQ tail (what the application writes to
them is ignored, as Linux's cached heads make it), reads the SQ tail and CQ
head the application publishes, and never trusts an index it did not check:
an SQ array entry out of range is counted in sq_dropped, a full CQ ring in
cq_overflow (no IORING_FEAT_NODROP).
Concurrency: Sentry loop only; the application may scribble on the rings at
any time, which can only confuse its own requests.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.mman import page_round_up
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.mm.memfile import MappedRange
from pyvisor.sentry.waitqueue import EVENT_IN, EVENT_OUT, WaitQueue

if TYPE_CHECKING:
    from pyvisor.sentry.mm.memfile import MemoryFile

# From <linux/io_uring.h>.
IORING_SETUP_IOPOLL = 1 << 0
IORING_SETUP_SQPOLL = 1 << 1
IORING_SETUP_SQ_AFF = 1 << 2
IORING_SETUP_CQSIZE = 1 << 3
IORING_SETUP_CLAMP = 1 << 4
IORING_SETUP_SUBMIT_ALL = 1 << 7
SETUP_SUPPORTED = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL

IORING_ENTER_GETEVENTS = 1 << 0
IORING_ENTER_SQ_WAKEUP = 1 << 1
IORING_ENTER_SQ_WAIT = 1 << 2
IORING_ENTER_EXT_ARG = 1 << 3
ENTER_KNOWN = (IORING_ENTER_GETEVENTS | IORING_ENTER_SQ_WAKEUP | IORING_ENTER_SQ_WAIT
               | IORING_ENTER_EXT_ARG)

IORING_FEAT_SINGLE_MMAP = 1 << 0
IORING_FEAT_SUBMIT_STABLE = 1 << 2
IORING_FEAT_RW_CUR_POS = 1 << 3
FEATURES = IORING_FEAT_SINGLE_MMAP | IORING_FEAT_SUBMIT_STABLE | IORING_FEAT_RW_CUR_POS

IORING_OFF_SQ_RING = 0
IORING_OFF_CQ_RING = 0x8000000
IORING_OFF_SQES = 0x10000000

IORING_OP_NOP, IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC = 0, 1, 2, 3
IORING_OP_READ, IORING_OP_WRITE = 22, 23
SUPPORTED_OPS = (IORING_OP_NOP, IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC,
                 IORING_OP_READ, IORING_OP_WRITE)

IOSQE_FIXED_FILE, IOSQE_IO_DRAIN, IOSQE_IO_LINK, IOSQE_IO_HARDLINK = 1, 2, 4, 8
IOSQE_ASYNC, IOSQE_BUFFER_SELECT, IOSQE_CQE_SKIP_SUCCESS = 16, 32, 64
IOSQE_KNOWN = 0x7F
IORING_FSYNC_DATASYNC = 1

IORING_MAX_ENTRIES = 32768
IORING_MAX_CQ_ENTRIES = 2 * IORING_MAX_ENTRIES

# struct io_uring_params: sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle,
# features, wq_fd, resv[3], then io_sqring_offsets and io_cqring_offsets.
PARAMS = struct.Struct("<10I" "7IIQ" "6IIIQ")
assert PARAMS.size == 120
# struct io_uring_sqe (64 bytes): opcode, flags, ioprio, fd, off, addr, len, op flags,
# user_data, buf_index, personality, splice_fd_in, addr3, pad.
SQE = struct.Struct("<BBHiQQIIQHHiQQ")
assert SQE.size == 64
CQE = struct.Struct("<QiI")
assert CQE.size == 16

# Offsets in the rings extent (Linux's struct io_rings, each head and tail on its own
# cache line).
SQ_HEAD, SQ_TAIL, CQ_HEAD, CQ_TAIL = 0, 64, 128, 192
SQ_RING_MASK, CQ_RING_MASK, SQ_RING_ENTRIES, CQ_RING_ENTRIES = 256, 260, 264, 268
SQ_DROPPED, SQ_FLAGS, CQ_FLAGS, CQ_OVERFLOW = 272, 276, 280, 284
CQES = 320

_U32 = struct.Struct("<I")


def _pow2(n: int) -> int:
    p = 1
    while p < n:
        p <<= 1
    return p


class Ring:
    """One io_uring instance.  Linux: struct io_ring_ctx.  It is also the Mappable of
    its file: mmap offsets select the rings or the SQE array."""

    def __init__(self, memfile: MemoryFile, sq_entries: int, cq_entries: int) -> None:
        self.memfile = memfile
        self.sq_entries, self.cq_entries = sq_entries, cq_entries
        self.sq_array = (CQES + cq_entries * CQE.size + 63) & ~63
        self.rings_size = self.sq_array + 4 * sq_entries
        self.sqes_size = SQE.size * sq_entries
        self.sqes, self.sqes_cap = -1, 0
        self.rings, self.rings_cap = memfile.allocate(self.rings_size)
        self.sqes, self.sqes_cap = memfile.allocate(self.sqes_size)   # __del__ frees both
        self.sq_head = 0               # owned by the Sentry; published at SQ_HEAD
        self.cq_tail = 0               # owned by the Sentry; published at CQ_TAIL
        self.dropped = 0
        self.overflow = 0
        self.wq = WaitQueue()          # woken when CQEs are posted
        self.eventfd: Any = None       # IORING_REGISTER_EVENTFD: an EventFD impl
        for off, val in ((SQ_RING_MASK, sq_entries - 1), (CQ_RING_MASK, cq_entries - 1),
                         (SQ_RING_ENTRIES, sq_entries), (CQ_RING_ENTRIES, cq_entries)):
            self._put(off, val)

    def __del__(self) -> None:
        try:
            self.memfile.free(self.rings, self.rings_cap)
            if self.sqes >= 0:
                self.memfile.free(self.sqes, self.sqes_cap)
        except Exception:  # noqa: BLE001 - a half-built ring, or interpreter shutdown
            pass

    # -- the shared memory ----------------------------------------------------------

    def _get(self, off: int) -> int:
        return int(_U32.unpack_from(self.memfile.map, self.rings + off)[0])

    def _put(self, off: int, val: int) -> None:
        _U32.pack_into(self.memfile.map, self.rings + off, val & 0xFFFFFFFF)

    def translate(self, offset: int, length: int, writable_shared: bool) -> list[MappedRange]:
        """Mappable: the rings at IORING_OFF_SQ_RING and IORING_OFF_CQ_RING, the SQEs
        at IORING_OFF_SQES (pages further into a region for a split or moved
        mapping); a mapping past its region is EINVAL (Linux:
        io_uring_validate_mmap_request)."""
        for base, mem, size in ((IORING_OFF_SQ_RING, self.rings, self.rings_size),
                                (IORING_OFF_CQ_RING, self.rings, self.rings_size),
                                (IORING_OFF_SQES, self.sqes, self.sqes_size)):
            end = page_round_up(size)
            if base <= offset < base + end:
                if offset - base + length > end:
                    raise SyscallError(Errno.EINVAL)
                return [MappedRange(offset, mem + offset - base, length)]
        raise SyscallError(Errno.EINVAL)

    # -- submission -----------------------------------------------------------------

    def pending_sqes(self) -> int:
        """SQEs the application has published and the Sentry not consumed."""
        return min((self._get(SQ_TAIL) - self.sq_head) & 0xFFFFFFFF, self.sq_entries)

    def next_sqe(self) -> tuple[int, ...] | None:
        """Consumes the SQ entry at the head: its SQE fields, or None for an index out
        of range (counted as dropped)."""
        idx = self._get(self.sq_array + 4 * (self.sq_head & (self.sq_entries - 1)))
        self.sq_head = (self.sq_head + 1) & 0xFFFFFFFF
        self._put(SQ_HEAD, self.sq_head)
        if idx >= self.sq_entries:
            self.dropped += 1
            self._put(SQ_DROPPED, self.dropped)
            return None
        return SQE.unpack_from(self.memfile.map, self.sqes + SQE.size * idx)

    # -- completion -----------------------------------------------------------------

    def cq_ready(self) -> int:
        """CQEs posted and not yet consumed by the application."""
        return min((self.cq_tail - self._get(CQ_HEAD)) & 0xFFFFFFFF, self.cq_entries)

    def post(self, user_data: int, res: int, flags: int = 0) -> None:
        """Posts a CQE, or counts an overflow if the ring is full."""
        if (self.cq_tail - self._get(CQ_HEAD)) & 0xFFFFFFFF >= self.cq_entries:
            self.overflow += 1
            self._put(CQ_OVERFLOW, self.overflow)
            return
        slot = self.rings + CQES + CQE.size * (self.cq_tail & (self.cq_entries - 1))
        CQE.pack_into(self.memfile.map, slot, user_data, res, flags)
        self.cq_tail = (self.cq_tail + 1) & 0xFFFFFFFF
        self._put(CQ_TAIL, self.cq_tail)
        self.wq.notify(EVENT_IN)
        if self.eventfd is not None:
            from pyvisor.sentry.kernel.aio import signal_eventfd
            signal_eventfd(self.eventfd)

    def readiness(self, mask: int) -> int:
        ev = EVENT_IN if self.cq_ready() else 0
        if self.pending_sqes() < self.sq_entries:
            ev |= EVENT_OUT
        return ev & mask


def setup_sizes(entries: int, flags: int, cq_wanted: int) -> tuple[int, int]:
    """(sq_entries, cq_entries) for io_uring_setup's arguments.  Linux: io_uring_create."""
    if entries == 0:
        raise SyscallError(Errno.EINVAL)
    if entries > IORING_MAX_ENTRIES:
        if not flags & IORING_SETUP_CLAMP:
            raise SyscallError(Errno.EINVAL)
        entries = IORING_MAX_ENTRIES
    sq = _pow2(entries)
    if flags & IORING_SETUP_CQSIZE:
        if cq_wanted == 0:
            raise SyscallError(Errno.EINVAL)
        if cq_wanted > IORING_MAX_CQ_ENTRIES:
            if not flags & IORING_SETUP_CLAMP:
                raise SyscallError(Errno.EINVAL)
            cq_wanted = IORING_MAX_CQ_ENTRIES
        cq = _pow2(cq_wanted)
        if cq < sq:
            raise SyscallError(Errno.EINVAL)
    else:
        cq = 2 * sq
    return sq, cq


def params_out(ring: Ring, flags: int) -> bytes:
    """struct io_uring_params as io_uring_setup returns it."""
    return PARAMS.pack(ring.sq_entries, ring.cq_entries, flags, 0, 0, FEATURES, 0, 0, 0, 0,
                       SQ_HEAD, SQ_TAIL, SQ_RING_MASK, SQ_RING_ENTRIES, SQ_FLAGS, SQ_DROPPED,
                       ring.sq_array, 0, 0,
                       CQ_HEAD, CQ_TAIL, CQ_RING_MASK, CQ_RING_ENTRIES, CQ_OVERFLOW, CQES,
                       CQ_FLAGS, 0, 0)


def check_ioprio(ioprio: int) -> None:
    """Linux: ioprio_check_cap, as io_prep_rw applies it (root may use every class)."""
    cls, data = ioprio >> 13, ioprio & 0x1FFF
    if cls == 0:
        if data:
            raise SyscallError(Errno.EINVAL)
    elif cls in (1, 2):
        if data >= 8:
            raise SyscallError(Errno.EINVAL)
    elif cls != 3:
        raise SyscallError(Errno.EINVAL)

