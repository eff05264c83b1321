"""A real Kernel on the fake platform (pyvisor/sentry/platform/fake.py): tasks whose
"application code" is a Python generator yielding syscalls.  No processes, no ptrace."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from pyvisor.abi.linux.mman import MAP_PRIVATE, PROT_READ, PROT_WRITE
from pyvisor.runtime import boot
from pyvisor.sentry.fsimpl.tmpfs.tmpfs import TmpFS
from pyvisor.sentry.kernel.kernel import Kernel
from pyvisor.sentry.kernel.task import Credentials, Task
from pyvisor.sentry.mm.memfile import MemoryFile
from pyvisor.sentry.platform.fake import FakeAddressSpace, FakePlatform, Program
from pyvisor.sentry.syscalls.linux.table_amd64 import AMD64
from pyvisor.sentry.vfs.vfs import MountNamespace

STACK_SIZE = 1 << 16
WATCHDOG_NS = 20 * 10**9      # a test that deadlocks fails instead of hanging


class Deadlock(Exception):
    pass


@dataclass
class Sandbox:
    kernel: Kernel
    platform: FakePlatform
    init: Task
    scratch: int = 0          # a read-write page of init's for the program's data

    @property
    def space(self) -> FakeAddressSpace:
        space = self.init.mm.space
        assert isinstance(space, FakeAddressSpace)
        return space

    def peek(self, addr: int, n: int) -> bytes:
        return self.space.read(addr, n)

    def poke(self, addr: int, data: bytes) -> None:
        assert self.space.write(addr, data) == len(data)

    def u32(self, addr: int) -> int:
        return int(struct.unpack("<I", self.peek(addr, 4))[0])

    def run(self) -> int:
        """Runs the loop until init exits; its wait status."""
        def watchdog() -> None:
            raise Deadlock("tasks still blocked: " + repr(
                {t.tid: t.coro for t in self.kernel.tasks_by_tid.values()}))
        self.kernel.add_timer(self.kernel.now() + WATCHDOG_NS, watchdog)
        try:
            return self.kernel.run()
        finally:
            self.kernel.shutdown()


def sandbox(program: Callable[[Sandbox], Program], with_proc: bool = False) -> Sandbox:
    """A kernel whose init (pid 1, a tmpfs root, /proc if asked) runs `program(sb)`,
    with a mapped stack and one scratch page at `sb.scratch`."""
    memfile = MemoryFile()
    platform = FakePlatform(memfile.fd)
    kernel = Kernel(platform, memfile, AMD64)
    root = TmpFS(memfile, 1 << 24, 1024)
    ns = MountNamespace(root, root.new_root(), source="none", options="rw")
    kernel.root_ns = ns
    t = boot.new_task(kernel, ns, Credentials(), kernel.alloc_pid())
    tg = t.tg
    tg.comm = t.name = b"scripted"
    tg.tasks.append(t)
    t.mm.add_user()
    kernel.groups[tg.tgid] = tg
    kernel.register(t)
    kernel.init = tg
    if with_proc:
        from pyvisor.sentry.fsimpl.proc.procfs import new_procfs
        procfs, procroot = new_procfs(kernel)
        loc = boot._mkdir_p(ns, t, "/proc")
        ns.mount(loc.mount, loc.dentry, procfs, procroot, source="proc", options="rw")
    stack = t.mm.mmap(0, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fixed=False,
                      name=b"[stack]")
    t.regs.sp = stack + STACK_SIZE - 64
    sb = Sandbox(kernel, platform, t)
    sb.scratch = t.mm.mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fixed=False)
    platform.start(t.thread, program(sb))  # type: ignore[arg-type]
    kernel.resume(t, None)
    return sb
