"""linux_dirent64 records, packed once per listing.

Linux: fs/readdir.c filldir64.  getdents64 hands out whole records from a byte
image of the listing; building that image is the per-entry cost of a directory
read, so it is done once per open-and-rewind (vfs/file.py DirectoryImpl), and
filesystems whose children the Sentry owns (tmpfs) cache their part of it until
the directory changes (Inode.dirent_records).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

_HEAD = struct.Struct("<QqHB")      # d_ino, d_off, d_reclen, d_type; then the name
_HEAD_SIZE = _HEAD.size             # 19

# Every listing starts with '.' and '..' at offsets 1 and 2; children follow.
FIRST_CHILD_OFF = 3


# One Struct per record length: the header and the NUL-padded name in one pack
# (the "s" format pads with zeros), the cheapest way found to build a record.
_RECORDS: dict[int, struct.Struct] = {}


def pack_dirents(entries: Iterable[tuple[bytes, int, int]],
                 first_off: int) -> tuple[bytes, list[int]]:
    """The records of `entries` (name, ino, d_type), the k-th with d_off
    first_off + k (the offset that resumes after it), and the end offset of each
    record in the image (an increasing list, for bisect)."""
    structs = _RECORDS
    parts: list[bytes] = []
    ends: list[int] = []
    end = 0
    off = first_off
    for name, ino, dtype in entries:
        reclen = (_HEAD_SIZE + len(name) + 8) & ~7      # name, NUL, 8-byte aligned
        st = structs.get(reclen)
        if st is None:
            st = structs[reclen] = struct.Struct(f"<QqHB{reclen - _HEAD_SIZE}s")
        parts.append(st.pack(ino, off, reclen, dtype, name))
        end += reclen
        ends.append(end)
        off += 1
    return b"".join(parts), ends


def unpack_dirents(image: bytes) -> list[tuple[bytes, int, int]]:
    """(name, ino, d_type) of every record in `image`, in order (the inverse of
    pack_dirents, for tests and /proc readers)."""
    out = []
    off = 0
    while off < len(image):
        ino, _, reclen, dtype = _HEAD.unpack_from(image, off)
        name = image[off + _HEAD_SIZE:off + reclen].split(b"\0", 1)[0]
        out.append((name, ino, dtype))
        off += reclen
    return out
