"""Linux native AIO: contexts and their completion rings.  Linux: fs/aio.c.

io_setup maps a ring into the caller's address space, as Linux does: an
extent of the memory file mapped MAP_SHARED ("/[aio] (deleted)", not
expandable by mremap), whose header (struct aio_ring) and io_event array the
Sentry writes through its own mapping of the memory file, and which glibc and
libaio read in user space (they consume events by moving `head`).  The
context id the application holds is the ring's address; a lookup reads the
`id` field there (an unreadable ring, after munmap or mprotect, is EINVAL) and
checks that the mapping at that address is still the context's ring, so an
mremap'd ring answers at its new address only.

Requests complete during io_submit, in order, on the submitting task (there
are no kernel worker threads): reads and writes of regular files never wait;
a pipe or socket waits there as Linux's own synchronous fallback does.  Each
completion is an io_event in the ring, and a signal to the request's eventfd
(IOCB_FLAG_RESFD).  A ring never overflows: io_submit refuses requests
(EAGAIN) while the ring has no free slot for their events.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
import weakref
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.mman import page_round_up
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.mm.memfile import MappedRange
from pyvisor.sentry.waitqueue import EVENT_IN, WaitQueue

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.mm.memfile import MemoryFile
    from pyvisor.sentry.mm.memory_manager import MemoryManager

_ULLONG_MAX = (1 << 64) - 1

# From fs/aio.c and <linux/aio_abi.h>.
AIO_RING_MAGIC = 0xA10A10A1
AIO_RING_COMPAT_FEATURES = 1
RING_HEADER = struct.Struct("<8I")          # id, nr, head, tail, magic, compat, incompat, hlen
IO_EVENT = struct.Struct("<QQqq")           # data, obj, res, res2
AIO_MAX_NR = 0x10000                         # /proc/sys/fs/aio-max-nr
NR_CPUS = 2                                  # num_possible_cpus() as the sandbox shows it
_U32 = struct.Struct("<I")


def signal_eventfd(impl: Any) -> None:
    """Adds one to an eventfd's counter, saturating.  Linux: eventfd_signal."""
    impl.value = min(impl.value + 1, _ULLONG_MAX)
    impl.wq.notify(EVENT_IN)


class Context:
    """One AIO context.  Linux: struct kioctx.  It is also the Mappable of its ring."""

    def __init__(self, memfile: MemoryFile, index: int, max_reqs: int) -> None:
        self.memfile = memfile
        self.index = index                   # the ring's `id`: the slot in the mm's table
        self.max_reqs = max_reqs             # counted against AIO_MAX_NR
        events = max(max_reqs, NR_CPUS * 4) * 2
        self.size = page_round_up(RING_HEADER.size + IO_EVENT.size * events)
        self.nr = (self.size - RING_HEADER.size) // IO_EVENT.size
        self.mem, self.cap = memfile.allocate(self.size)
        self.tail = 0                        # owned by the Sentry; published in the ring
        self.user_addr = 0                   # where the ring is mapped (the context id)
        self.wq = WaitQueue()                # woken when events are posted
        self.dead = False
        RING_HEADER.pack_into(memfile.map, self.mem, index, self.nr, 0, 0, AIO_RING_MAGIC,
                              AIO_RING_COMPAT_FEATURES, 0, RING_HEADER.size)

    def __del__(self) -> None:
        try:
            self.memfile.free(self.mem, self.cap)
        except Exception:  # noqa: BLE001 - a half-built context, or interpreter shutdown
            pass

    def translate(self, offset: int, length: int, writable_shared: bool) -> list[MappedRange]:
        """Mappable: the ring extent."""
        if offset + length > self.size:
            raise SyscallError(Errno.EINVAL)
        return [MappedRange(offset, self.mem + offset, length)]

    def head(self) -> int:
        """The consumer's index as the ring says (the application may move it); an
        index out of range counts as the ring being empty at the tail."""
        h = int(_U32.unpack_from(self.memfile.map, self.mem + 8)[0])
        return h if h < self.nr else self.tail

    def ready(self) -> int:
        return (self.tail - self.head()) % self.nr

    def room(self) -> int:
        """Event slots free (one stays empty to tell full from empty)."""
        return self.nr - 1 - self.ready()

    def post(self, data: int, obj: int, res: int, eventfd: Any) -> None:
        """Writes an io_event at the tail.  Preconditions: room() > 0."""
        IO_EVENT.pack_into(self.memfile.map, self.mem + RING_HEADER.size
                           + IO_EVENT.size * self.tail, data, obj, res, 0)
        self.tail = (self.tail + 1) % self.nr
        _U32.pack_into(self.memfile.map, self.mem + 12, self.tail)
        self.wq.notify(EVENT_IN)
        if eventfd is not None:
            signal_eventfd(eventfd)

    def take(self, n: int) -> list[bytes]:
        """Consumes up to `n` events from the head (moving it in the ring)."""
        out = []
        head = self.head()
        while len(out) < n and head != self.tail:
            off = self.mem + RING_HEADER.size + IO_EVENT.size * head
            out.append(bytes(self.memfile.map[off:off + IO_EVENT.size]))
            head = (head + 1) % self.nr
        _U32.pack_into(self.memfile.map, self.mem + 8, head)
        return out


class AioTable:
    """The contexts of one address space.  Linux: mm->ioctx_table."""

    def __init__(self) -> None:
        self.contexts: dict[int, Context] = {}
        self.next_index = 0


# Per-sandbox count of requests reserved by io_setup (Linux: aio_nr, against aio_max_nr).
_aio_nr: weakref.WeakKeyDictionary[Any, list[int]] = weakref.WeakKeyDictionary()


def table(mm: MemoryManager, create: bool) -> AioTable | None:
    tab: AioTable | None = getattr(mm, "aio_table", None)
    if tab is None and create:
        tab = AioTable()
        mm.aio_table = tab     # type: ignore[attr-defined]
    return tab


def setup(t: Task, nr_events: int) -> Context:
    """Makes a context and maps its ring.  Linux: ioctx_alloc + aio_setup_ring."""
    if nr_events == 0 or nr_events > 0x10000000 // IO_EVENT.size // 2:
        raise SyscallError(Errno.EINVAL)
    if nr_events > AIO_MAX_NR:
        raise SyscallError(Errno.EAGAIN)
    counter = _aio_nr.setdefault(t.kernel, [0])
    if counter[0] + nr_events > AIO_MAX_NR:
        raise SyscallError(Errno.EAGAIN)
    tab = table(t.mm, True)
    assert tab is not None
    while tab.next_index in tab.contexts:
        tab.next_index = (tab.next_index + 1) & 0xFFFFFFFF
    try:
        ctx = Context(t.kernel.memfile, tab.next_index, nr_events)
    except MemoryError:
        raise SyscallError(Errno.ENOMEM) from None
    # PROT_READ|PROT_WRITE, MAP_SHARED; never expanded by mremap (VM_DONTEXPAND).
    ctx.user_addr = t.mm.mmap(0, ctx.size, 3, 0x01, False, mappable=ctx,
                              name=b"/[aio] (deleted)", extra=ctx, dontexpand=True)
    tab.contexts[ctx.index] = ctx
    tab.next_index = (ctx.index + 1) & 0xFFFFFFFF
    counter[0] += nr_events
    return ctx


def lookup(t: Task, ctx_id: int) -> Context:
    """The context whose ring is mapped at `ctx_id`.  Linux: lookup_ioctx."""
    tab = table(t.mm, False)
    if tab is None or ctx_id == 0:
        raise SyscallError(Errno.EINVAL)
    try:
        (index,) = _U32.unpack(t.copy_in(ctx_id, 4))
    except SyscallError:
        raise SyscallError(Errno.EINVAL) from None
    ctx = tab.contexts.get(index)
    if ctx is None or ctx.dead:
        raise SyscallError(Errno.EINVAL)
    if ctx.user_addr != ctx_id:
        vma = t.mm.find(ctx_id)
        if vma is None or vma.mappable is not ctx or vma.start != ctx_id or vma.offset:
            raise SyscallError(Errno.EINVAL)
        ctx.user_addr = ctx_id                # the ring moved (Linux: aio_ring_mremap)
    return ctx


def destroy(t: Task, ctx: Context) -> None:
    """Kills a context and unmaps its ring.  Linux: kill_ioctx."""
    tab = table(t.mm, False)
    if tab is not None:
        tab.contexts.pop(ctx.index, None)
    ctx.dead = True
    ctx.wq.notify(EVENT_IN)
    counter = _aio_nr.get(t.kernel)
    if counter is not None:
        counter[0] -= ctx.max_reqs
    vma = t.mm.find(ctx.user_addr)
    if vma is not None and vma.mappable is ctx:
        t.mm.munmap(vma.start, vma.end - vma.start)

