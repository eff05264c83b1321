/* Extended FP state across signal handlers: the ymm (and, where the CPU has
 * AVX-512, zmm and opmask) registers an interrupted program holds are intact
 * after a handler that uses them returns; the handler starts with a clean FPU
 * (MXCSR default, upper halves zero); the frame carries the XSAVE image
 * (FP_XSTATE_MAGIC1/2, the ymm upper halves at CPUID's offset), and a handler
 * that edits it changes what rt_sigreturn restores.  Linux:
 * arch/x86/kernel/fpu/signal.c. */
#define _GNU_SOURCE
#include "check.h"

#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>

#define FP_XSTATE_MAGIC1 0x46505853U
#define FP_XSTATE_MAGIC2 0x46505845U

static uint8_t before[16][32] __attribute__((aligned(32)));
static uint8_t after[16][32] __attribute__((aligned(32)));
static uint8_t clobber[32] __attribute__((aligned(32)));
static uint8_t seen_ymm1[32] __attribute__((aligned(32)));
static volatile uint32_t seen_mxcsr;
static volatile int handled, frame_ok, edit_frame, break_frame;
static unsigned avx_offset;           /* CPUID.(0xd,2).EBX: the AVX component's offset */
static unsigned xsave_size;

__attribute__((target("avx")))
static void handler(int sig, siginfo_t *si, void *ucv)
{
    (void)sig; (void)si;
    /* What the handler starts with: before any code of ours touches the FPU. */
    __asm__ __volatile__("vmovdqu %%ymm1, %0\n\tstmxcsr %1"
                         : "=m"(seen_ymm1), "=m"(seen_mxcsr));
    /* Use every ymm register. */
    __asm__ __volatile__(
        "vmovdqu %0, %%ymm0\n\t vmovdqu %0, %%ymm1\n\t vmovdqu %0, %%ymm2\n\t"
        "vmovdqu %0, %%ymm3\n\t vmovdqu %0, %%ymm4\n\t vmovdqu %0, %%ymm5\n\t"
        "vmovdqu %0, %%ymm6\n\t vmovdqu %0, %%ymm7\n\t vmovdqu %0, %%ymm8\n\t"
        "vmovdqu %0, %%ymm9\n\t vmovdqu %0, %%ymm10\n\t vmovdqu %0, %%ymm11\n\t"
        "vmovdqu %0, %%ymm12\n\t vmovdqu %0, %%ymm13\n\t vmovdqu %0, %%ymm14\n\t"
        "vmovdqu %0, %%ymm15\n\t"
        :: "m"(clobber)
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
          "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    ucontext_t *uc = ucv;
    uint8_t *fp = (uint8_t *)uc->uc_mcontext.fpregs;
    uint32_t magic1, ext, xsize, magic2;
    uint64_t xfeatures, xstate_bv;
    memcpy(&magic1, fp + 464, 4);
    memcpy(&ext, fp + 468, 4);
    memcpy(&xfeatures, fp + 472, 8);
    memcpy(&xsize, fp + 480, 4);
    memcpy(&xstate_bv, fp + 512, 8);
    frame_ok = ((uintptr_t)fp % 64 == 0) && magic1 == FP_XSTATE_MAGIC1 && ext == xsize + 4 &&
               (xfeatures & 7) == 7 && xsize >= avx_offset + 256 && xsize <= xsave_size &&
               (uc->uc_flags & 1 /* UC_FP_XSTATE */);
    if (frame_ok) {
        memcpy(&magic2, fp + xsize, 4);
        frame_ok = magic2 == FP_XSTATE_MAGIC2 && (xstate_bv & 4) &&
                   /* ymm3's upper half as the program set it */
                   memcmp(fp + avx_offset + 3 * 16, before[3] + 16, 16) == 0;
    }
    if (break_frame) {     /* a compacted-format header: XRSTOR faults, SIGSEGV */
        uint64_t comp = 1ULL << 63;
        memcpy(fp + 520, &comp, 8);
    }
    if (edit_frame)        /* ymm2's upper half: what rt_sigreturn must now restore */
        memset(fp + avx_offset + 2 * 16, 0x5a, 16);
    handled++;
}

/* Loads ymm0-15, sends itself SIGUSR1 (the handler runs at the syscall's return),
 * stores ymm0-15: all in one asm block, so nothing else touches them. */
__attribute__((target("avx")))
static void round_trip(void)
{
    long pid = getpid();
    long ret;
    __asm__ __volatile__(
        "vmovdqu 0(%[b]), %%ymm0\n\t vmovdqu 32(%[b]), %%ymm1\n\t"
        "vmovdqu 64(%[b]), %%ymm2\n\t vmovdqu 96(%[b]), %%ymm3\n\t"
        "vmovdqu 128(%[b]), %%ymm4\n\t vmovdqu 160(%[b]), %%ymm5\n\t"
        "vmovdqu 192(%[b]), %%ymm6\n\t vmovdqu 224(%[b]), %%ymm7\n\t"
        "vmovdqu 256(%[b]), %%ymm8\n\t vmovdqu 288(%[b]), %%ymm9\n\t"
        "vmovdqu 320(%[b]), %%ymm10\n\t vmovdqu 352(%[b]), %%ymm11\n\t"
        "vmovdqu 384(%[b]), %%ymm12\n\t vmovdqu 416(%[b]), %%ymm13\n\t"
        "vmovdqu 448(%[b]), %%ymm14\n\t vmovdqu 480(%[b]), %%ymm15\n\t"
        "syscall\n\t"
        "vmovdqu %%ymm0, 0(%[a])\n\t vmovdqu %%ymm1, 32(%[a])\n\t"
        "vmovdqu %%ymm2, 64(%[a])\n\t vmovdqu %%ymm3, 96(%[a])\n\t"
        "vmovdqu %%ymm4, 128(%[a])\n\t vmovdqu %%ymm5, 160(%[a])\n\t"
        "vmovdqu %%ymm6, 192(%[a])\n\t vmovdqu %%ymm7, 224(%[a])\n\t"
        "vmovdqu %%ymm8, 256(%[a])\n\t vmovdqu %%ymm9, 288(%[a])\n\t"
        "vmovdqu %%ymm10, 320(%[a])\n\t vmovdqu %%ymm11, 352(%[a])\n\t"
        "vmovdqu %%ymm12, 384(%[a])\n\t vmovdqu %%ymm13, 416(%[a])\n\t"
        "vmovdqu %%ymm14, 448(%[a])\n\t vmovdqu %%ymm15, 480(%[a])\n\t"
        : "=a"(ret)
        : [b] "r"(before), [a] "r"(after), "0"((long)SYS_kill), "D"(pid), "S"((long)SIGUSR1)
        : "rcx", "r11", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
          "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    CHECK(ret == 0);
}

/* AVX-512: zmm16-31 (the Hi16_ZMM component) and an opmask register across a signal. */
static uint8_t zin[64] __attribute__((aligned(64))), zout[2][64] __attribute__((aligned(64)));
static uint64_t kout;

__attribute__((target("avx512f")))
static void round_trip_512(void)
{
    long pid = getpid(), ret;
    __asm__ __volatile__(
        "vmovdqu64 (%[i]), %%zmm17\n\t vmovdqu64 (%[i]), %%zmm31\n\t"
        "movq $0xa5a5, %%rbx\n\t kmovw %%ebx, %%k3\n\t"
        "syscall\n\t"
        "vmovdqu64 %%zmm17, (%[o])\n\t vmovdqu64 %%zmm31, 64(%[o])\n\t"
        "kmovw %%k3, %%ebx\n\t movq %%rbx, (%[k])\n\t"
        : "=a"(ret)
        : [i] "r"(zin), [o] "r"(zout), [k] "r"(&kout), "0"((long)SYS_kill), "D"(pid),
          "S"((long)SIGUSR1)
        : "rbx", "rcx", "r11", "memory", "xmm17", "xmm31", "k3");
    CHECK(ret == 0);
}

__attribute__((target("avx512f")))
static void handler_512(int sig)
{
    (void)sig;
    __asm__ __volatile__("vpternlogd $0xff, %%zmm17, %%zmm17, %%zmm17\n\t"
                         "vpternlogd $0xff, %%zmm31, %%zmm31, %%zmm31\n\t"
                         "kxnorw %%k3, %%k3, %%k3" ::: "xmm17", "xmm31", "k3");
    handled++;
}

int main(void)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx")) {
        printf("no AVX on this CPU: nothing to check\n");
        ok();
        return 0;
    }
    unsigned a, b, c, d;
    __cpuid_count(0xd, 2, a, b, c, d);
    avx_offset = b;
    __cpuid_count(0xd, 0, a, b, c, d);
    xsave_size = c;

    for (int r = 0; r < 16; r++)
        for (int i = 0; i < 32; i++)
            before[r][i] = (uint8_t)(r * 37 + i * 11 + 1);
    memset(clobber, 0xee, sizeof clobber);
    struct sigaction sa = {0};
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);

    /* A non-default MXCSR (flush-to-zero, round toward zero) in the program. */
    uint32_t mx = 0x1f80 | 0x8000 | 0x6000, mx_after;
    __asm__ __volatile__("ldmxcsr %0" :: "m"(mx));
    round_trip();
    __asm__ __volatile__("stmxcsr %0" : "=m"(mx_after));
    CHECK(handled == 1);
    CHECK(frame_ok);
    for (int r = 0; r < 16; r++)
        CHECK(memcmp(before[r], after[r], 32) == 0);
    CHECK(mx_after == mx);
    /* The handler began with a clean FPU. */
    static const uint8_t zero[32];
    CHECK(seen_mxcsr == 0x1f80);
    CHECK(memcmp(seen_ymm1, zero, 32) == 0);
    uint32_t def = 0x1f80;
    __asm__ __volatile__("ldmxcsr %0" :: "m"(def));

    /* A handler that edits the saved ymm2 upper half: rt_sigreturn restores the edit. */
    edit_frame = 1;
    round_trip();
    CHECK(handled == 2 && frame_ok);
    uint8_t want[16];
    memset(want, 0x5a, 16);
    CHECK(memcmp(after[2], before[2], 16) == 0 && memcmp(after[2] + 16, want, 16) == 0);
    for (int r = 0; r < 16; r++)
        if (r != 2)
            CHECK(memcmp(before[r], after[r], 32) == 0);

    /* A frame whose XSAVE header XRSTOR refuses: rt_sigreturn kills with SIGSEGV. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        edit_frame = 0;
        break_frame = 1;
        round_trip();
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);

    if (__builtin_cpu_supports("avx512f")) {
        sa.sa_handler = handler_512;
        sa.sa_flags = 0;
        CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
        for (int i = 0; i < 64; i++)
            zin[i] = (uint8_t)(i * 7 + 3);
        round_trip_512();
        CHECK(handled == 3);
        CHECK(memcmp(zout[0], zin, 64) == 0 && memcmp(zout[1], zin, 64) == 0);
        CHECK(kout == 0xa5a5);
    }
    ok();
    return 0;
}
