"""File types and modes, struct stat and struct statx.  From <linux/stat.h>, <asm/stat.h>."""

import struct

S_IFMT = 0o170000
S_IFSOCK = 0o140000
S_IFLNK = 0o120000
S_IFREG = 0o100000
S_IFBLK = 0o060000
S_IFDIR = 0o040000
S_IFCHR = 0o020000
S_IFIFO = 0o010000
S_ISUID = 0o4000
S_ISGID = 0o2000
S_ISVTX = 0o1000

# d_type values for getdents64.  From <linux/fs.h> (DT_*).
DT_UNKNOWN = 0
DT_FIFO = 1
DT_CHR = 2
DT_DIR = 4
DT_BLK = 6
DT_REG = 8
DT_LNK = 10
DT_SOCK = 12


def dtype_of(mode: int) -> int:
    """The DT_* value for a file mode."""
    return (mode & S_IFMT) >> 12


# struct stat on amd64 (144 bytes): dev, ino, nlink, mode, uid, gid, pad, rdev, size, blksize,
# blocks, atime, atime_ns, mtime, mtime_ns, ctime, ctime_ns, 3 reserved.
STAT = struct.Struct("<QQQIIIiQqqqqqqqqq24x")
assert STAT.size == 144

# struct statx (256 bytes).
STATX = struct.Struct("<IIQIIIHxxQQQQ" "qIi" "qIi" "qIi" "qIi" "IIII" "Q" "104x")
assert STATX.size == 256
STATX_TYPE = 0x1
STATX_MODE = 0x2
STATX_NLINK = 0x4
STATX_UID = 0x8
STATX_GID = 0x10
STATX_ATIME = 0x20
STATX_MTIME = 0x40
STATX_CTIME = 0x80
STATX_INO = 0x100
STATX_SIZE = 0x200
STATX_BLOCKS = 0x400
STATX_BASIC_STATS = 0x7FF
STATX_BTIME = 0x800

# struct statfs on amd64 (120 bytes).
STATFS = struct.Struct("<7q2i3q32x")
assert STATFS.size == 120
TMPFS_MAGIC = 0x01021994
PROC_SUPER_MAGIC = 0x9FA0
OVERLAYFS_SUPER_MAGIC = 0x794C7630
DEVPTS_SUPER_MAGIC = 0x1CD1
V9FS_MAGIC = 0x01021997
