/* The file-I/O tail: argument checks of sync_file_range, syncfs, fadvise64,
 * readahead, the positional calls on O_PATH files, lseek on devices, proc
 * files and directories, and statx's flags and STATX_MNT_ID. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include "check.h"

int main(void)
{
    char path[] = "/tmp/fileio_tailXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "123", 3) == 3);

    /* sync_file_range: fs/sync.c */
    CHECK(sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE) == 0);
    CHECK(sync_file_range(fd, 0, 0, 0) == 0);
    CHECK(sync_file_range(fd, 1, 0, SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) == 0);
    CHECK_ERR(sync_file_range(fd, -1, 0, 0), EINVAL);
    CHECK_ERR(sync_file_range(fd, 0, -1, 0), EINVAL);
    CHECK_ERR(sync_file_range(fd, 8912, INT64_MAX - 4096, 0), EINVAL);
    CHECK_ERR(sync_file_range(fd, 0, 0, 8), EINVAL);
    CHECK_ERR(sync_file_range(-1, 0, 0, 0), EBADF);
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK_ERR(sync_file_range(p[0], 0, 0, 0), ESPIPE);

    /* syncfs, fsync: no O_PATH file (fdget) */
    int opath = open(path, O_PATH);
    CHECK(opath >= 0);
    CHECK(syncfs(fd) == 0);
    CHECK(syncfs(p[0]) == 0);
    CHECK_ERR(syncfs(-1), EBADF);
    CHECK_ERR(syncfs(opath), EBADF);
    CHECK_ERR(fsync(opath), EBADF);
    CHECK_ERR(fdatasync(opath), EBADF);

    /* fadvise64 */
    for (int a = 0; a <= 5; a++)
        CHECK(syscall(SYS_fadvise64, fd, 0, 10, a) == 0);
    CHECK(syscall(SYS_fadvise64, fd, -5, 10, 0) == 0);    /* negative offset is fine */
    CHECK_ERR(syscall(SYS_fadvise64, fd, 0, -1L, 0), EINVAL);
    CHECK_ERR(syscall(SYS_fadvise64, fd, 0, 10, 12345), EINVAL);
    CHECK_ERR(syscall(SYS_fadvise64, opath, 0, 10, 0), EBADF);
    CHECK_ERR(syscall(SYS_fadvise64, p[0], 0, 10, 0), ESPIPE);

    /* readahead */
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(s >= 0);
    CHECK(readahead(fd, 1, 1) == 0);
    CHECK(readahead(fd, 4, 2) == 0);
    CHECK_ERR(readahead(-1, 1, 1), EBADF);
    CHECK_ERR(readahead(s, 1, 1), EINVAL);
    CHECK_ERR(readahead(opath, 0, 1), EBADF);
    int wo = open(path, O_WRONLY);
    CHECK(wo >= 0);
    CHECK_ERR(readahead(wo, 0, 1), EBADF);
    CHECK_ERR(readahead(p[0], 0, 1), EINVAL);

    /* positional I/O on an O_PATH file: EBADF before ESPIPE */
    char buf[8];
    struct iovec iov = {buf, sizeof buf};
    CHECK_ERR(pread(opath, buf, 1, 0), EBADF);
    CHECK_ERR(pwrite(opath, buf, 1, 0), EBADF);
    CHECK_ERR(preadv(opath, &iov, 1, 0), EBADF);
    CHECK_ERR(pwritev(opath, &iov, 1, 0), EBADF);
    CHECK_ERR(preadv2(opath, &iov, 1, 0, 0), EBADF);
    CHECK_ERR(pwritev2(opath, &iov, 1, 0, 0), EBADF);
    CHECK_ERR(pread(p[0], buf, 1, 0), ESPIPE);

    /* lseek: null_lseek, noop_llseek, seq_lseek */
    int dn = open("/dev/null", O_RDONLY);
    CHECK(dn >= 0);
    CHECK(lseek(dn, 1000, SEEK_CUR) == 0);
    CHECK(lseek(dn, -10, SEEK_SET) == 0);
    CHECK(lseek(dn, 0, SEEK_END) == 0);
    int df = open("/dev/full", O_RDONLY);
    CHECK(lseek(df, 123, SEEK_SET) == 0);
    CHECK(lseek(df, 123, SEEK_CUR) == 0);
    CHECK(lseek(df, 123, SEEK_END) == 0);
    int du = open("/dev/urandom", O_RDONLY);
    CHECK(lseek(du, -10, SEEK_CUR) == 0);
    CHECK(lseek(du, -10, SEEK_SET) == 0);
    int pm = open("/proc/meminfo", O_RDONLY);
    CHECK(lseek(pm, 0, SEEK_CUR) == 0);
    CHECK_ERR(lseek(pm, 0, SEEK_END), EINVAL);
    CHECK(lseek(pm, 1000, SEEK_CUR) == 1000);
    CHECK(lseek(fd, 0, SEEK_END) == 3);

    /* statx */
    struct statx stx, stx2;
    CHECK_ERR(statx(AT_FDCWD, path, AT_STATX_FORCE_SYNC | AT_STATX_DONT_SYNC, 0, &stx),
              EINVAL);
    CHECK_ERR(statx(-1, path, 0, 0x80000000U, &stx), EINVAL);
    CHECK(statx(AT_FDCWD, path, 0, STATX_MNT_ID, &stx) == 0);
    CHECK(stx.stx_mask & STATX_MNT_ID);
    CHECK(stx.stx_mnt_id != 0);
    CHECK(statx(AT_FDCWD, "/tmp", 0, STATX_MNT_ID, &stx2) == 0);
    CHECK(stx2.stx_mnt_id == stx.stx_mnt_id);
    CHECK(statx(AT_FDCWD, "/proc/self", 0, STATX_MNT_ID, &stx2) == 0);
    CHECK(stx2.stx_mnt_id != stx.stx_mnt_id);

    unlink(path);
    ok();
    return 0;
}
