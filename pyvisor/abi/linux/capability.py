"""Capabilities.  From <uapi/linux/capability.h>, <linux/capability.h>, <uapi/linux/prctl.h>."""

CAP_CHOWN = 0
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
CAP_FOWNER = 3
CAP_FSETID = 4
CAP_KILL = 5
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
CAP_LINUX_IMMUTABLE = 9
CAP_NET_BIND_SERVICE = 10
CAP_NET_BROADCAST = 11
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_IPC_LOCK = 14
CAP_IPC_OWNER = 15
CAP_SYS_MODULE = 16
CAP_SYS_RAWIO = 17
CAP_SYS_CHROOT = 18
CAP_SYS_PTRACE = 19
CAP_SYS_PACCT = 20
CAP_SYS_ADMIN = 21
CAP_SYS_BOOT = 22
CAP_SYS_NICE = 23
CAP_SYS_RESOURCE = 24
CAP_SYS_TIME = 25
CAP_SYS_TTY_CONFIG = 26
CAP_MKNOD = 27
CAP_LEASE = 28
CAP_AUDIT_WRITE = 29
CAP_AUDIT_CONTROL = 30
CAP_SETFCAP = 31
CAP_MAC_OVERRIDE = 32
CAP_MAC_ADMIN = 33
CAP_SYSLOG = 34
CAP_WAKE_ALARM = 35
CAP_BLOCK_SUSPEND = 36
CAP_AUDIT_READ = 37
CAP_PERFMON = 38
CAP_BPF = 39
CAP_CHECKPOINT_RESTORE = 40
CAP_LAST_CAP = 40
ALL_CAPS = (1 << (CAP_LAST_CAP + 1)) - 1

# Names as the OCI runtime spec writes them ("CAP_CHOWN", ...), by number.
CAP_NAMES = {name: value for name, value in globals().items()
             if name.startswith("CAP_") and name != "CAP_LAST_CAP" and isinstance(value, int)}


def cap_mask(names: "list[str] | tuple[str, ...]") -> int:
    """The set of the named capabilities.  Names this kernel does not know are left
    out, as runc leaves them out ("unknown or unavailable capabilities")."""
    mask = 0
    for name in names:
        n = CAP_NAMES.get(name.upper())
        if n is not None:
            mask |= 1 << n
    return mask


# The capabilities that follow the fsuid (CAP_FS_SET).
CAP_FS_MASK = (1 << CAP_CHOWN | 1 << CAP_DAC_OVERRIDE | 1 << CAP_DAC_READ_SEARCH | 1 << CAP_FOWNER
               | 1 << CAP_FSETID | 1 << CAP_LINUX_IMMUTABLE | 1 << CAP_MAC_OVERRIDE
               | 1 << CAP_MKNOD)

_LINUX_CAPABILITY_VERSION_1 = 0x19980330
_LINUX_CAPABILITY_VERSION_2 = 0x20071026
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# Secure bits.  From <uapi/linux/securebits.h>.
SECBIT_NOROOT = 1 << 0
SECBIT_NO_SETUID_FIXUP = 1 << 2
SECBIT_KEEP_CAPS = 1 << 4
SECBIT_KEEP_CAPS_LOCKED = 1 << 5
SECBIT_NO_CAP_AMBIENT_RAISE = 1 << 6
SECURE_ALL_BITS = 0x55
SECURE_ALL_LOCKS = 0xAA

# prctl options about capabilities.
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_GET_KEEPCAPS = 7
PR_SET_KEEPCAPS = 8
PR_GET_SECUREBITS = 27
PR_SET_SECUREBITS = 28
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET, PR_CAP_AMBIENT_RAISE, PR_CAP_AMBIENT_LOWER = 1, 2, 3
PR_CAP_AMBIENT_CLEAR_ALL = 4
