"""The ELF loader against Linux (fs/binfmt_elf.c): tests/programs/elf_load.c
builds hand-made executables after gVisor's exec_binary tests (data and bss
segments, anonymous-only segments, unaligned offsets, PIE overflow, bad
interpreters, #! nesting) and prints what each exec did and the mappings it
made; the output must be the same natively and in the sandbox."""

from __future__ import annotations

from pathlib import Path

from pvtest import Builder, Comparer


def test_elf_loader_matches_linux(program: Builder, compare: Comparer, world_tmp: Path) -> None:
    d = world_tmp / "elf"
    d.mkdir()
    d.chmod(0o777)
    native, _ = compare([program("elf_load.c"), str(d)])
    out = native.stdout
    # The run reached every kind of outcome (so a silent early stop cannot pass).
    assert "anon-only segment: stopped" in out and "unaligned offset: signal SEGV" in out
    assert "interpreter of another machine: execve: ELIBBAD" in out
    assert "script depth 6: execve: ELOOP" in out
