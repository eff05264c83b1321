"""Application seccomp: modes, operations, flags, actions, classic BPF opcodes.

From <linux/seccomp.h>, <linux/filter.h>, <linux/bpf_common.h>, <linux/audit.h>.
"""

# Modes (prctl PR_SET_SECCOMP / PR_GET_SECCOMP, /proc/PID/status "Seccomp:").
SECCOMP_MODE_DISABLED = 0
SECCOMP_MODE_STRICT = 1
SECCOMP_MODE_FILTER = 2

# seccomp(2) operations.
SECCOMP_SET_MODE_STRICT = 0
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_GET_NOTIF_SIZES = 3

# SECCOMP_SET_MODE_FILTER flags.
SECCOMP_FILTER_FLAG_TSYNC = 1 << 0
SECCOMP_FILTER_FLAG_LOG = 1 << 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 1 << 4
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5

# Filter return values: the action in the high 16 bits, data in the low 16.
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_KILL_THREAD = 0x00000000
SECCOMP_RET_TRAP = 0x00030000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_TRACE = 0x7FF00000
SECCOMP_RET_LOG = 0x7FFC0000
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ACTION_FULL = 0xFFFF0000
SECCOMP_RET_DATA = 0x0000FFFF

# struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
SECCOMP_DATA_SIZE = 64
# struct seccomp_notif, seccomp_notif_resp, seccomp_data sizes (SECCOMP_GET_NOTIF_SIZES).
SECCOMP_NOTIF_SIZES = (80, 24, 64)

AUDIT_ARCH_X86_64 = 0xC000003E

# Classic BPF.  From <linux/bpf_common.h>, <linux/filter.h>.
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_RET, BPF_MISC = range(8)
BPF_W, BPF_H, BPF_B = 0x00, 0x08, 0x10
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM, BPF_LEN, BPF_MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50
BPF_LSH, BPF_RSH, BPF_NEG, BPF_MOD, BPF_XOR = 0x60, 0x70, 0x80, 0x90, 0xA0
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET = 0x00, 0x10, 0x20, 0x30, 0x40
BPF_K, BPF_X, BPF_A = 0x00, 0x08, 0x10
BPF_TAX, BPF_TXA = 0x00, 0x80
BPF_MAXINSNS = 4096
BPF_MEMWORDS = 16
SKF_AD_OFF = -0x1000 & 0xFFFFFFFF       # ancillary loads: sockets only, never seccomp
# Linux's MAX_INSNS_PER_PATH: the instructions of all of a thread's filters, each filter
# counted with a 4-instruction penalty.
MAX_INSNS_PER_PATH = (1 << 18) // 8
