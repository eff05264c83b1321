/* Changes everything it can about the terminal on stdin/stdout, checks that
 * each change took effect, says "CHANGED", then ends as argv[1] says:
 *   exit      exit 0
 *   signal    kill itself with SIGKILL
 *   segv      die of SIGSEGV
 *   wait      sleep until killed from outside
 * The changes: an odd window size (TIOCSWINSZ), odd settings with TCSETSW
 * (other control characters, no echo, upper-case output, ...), raw mode, an input and
 * output flush (TCFLSH), then no IXON and output stopped (TCXONC TCOOFF):
 * natively the terminal stays so; in the sandbox, none of it reaches the
 * user's terminal. */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include "check.h"

int main(int argc, char **argv)
{
    struct winsize ws = {.ws_row = 5, .ws_col = 7, .ws_xpixel = 3, .ws_ypixel = 9}, got;
    struct termios t, odd, now;
    if (argc != 2)
        return 2;
    CHECK(isatty(0) && isatty(1));
    CHECK(ioctl(1, TIOCSWINSZ, &ws) == 0);
    CHECK(ioctl(0, TIOCGWINSZ, &got) == 0);
    CHECK(got.ws_row == 5 && got.ws_col == 7 && got.ws_xpixel == 3 && got.ws_ypixel == 9);

    CHECK(tcgetattr(0, &t) == 0);
    odd = t;
    odd.c_cc[VINTR] = 'x' & 0x1f;
    odd.c_cc[VEOF] = 'y' & 0x1f;
    odd.c_cc[VMIN] = 3;
    odd.c_cc[VTIME] = 7;
    odd.c_lflag &= ~(ECHO | ECHOE | ECHOK);
    odd.c_iflag |= IUCLC | IXANY;
    odd.c_oflag |= OLCUC;
    CHECK(ioctl(0, TCSETSW, &odd) == 0);
    CHECK(tcgetattr(1, &now) == 0);
    CHECK(now.c_cc[VINTR] == odd.c_cc[VINTR] && now.c_cc[VEOF] == odd.c_cc[VEOF]);
    CHECK(!(now.c_lflag & ECHO) && (now.c_iflag & IXANY) && (now.c_oflag & OLCUC));

    cfmakeraw(&now);
    CHECK(tcsetattr(0, TCSANOW, &now) == 0);
    CHECK(tcgetattr(0, &now) == 0);
    CHECK(!(now.c_lflag & (ICANON | ISIG)) && !(now.c_oflag & OPOST));

    /* The flush discards what the terminal's reader has not read yet: say CHANGED after. */
    CHECK(tcflush(0, TCIOFLUSH) == 0);
    CHECK(write(1, "CHANGED\n", 8) == 8);
    CHECK(tcdrain(1) == 0);
    now.c_iflag &= ~IXON;
    CHECK(tcsetattr(0, TCSANOW, &now) == 0);
    CHECK(tcflow(1, TCOOFF) == 0);

    if (strcmp(argv[1], "signal") == 0)
        kill(getpid(), SIGKILL);
    if (strcmp(argv[1], "segv") == 0)
        *(volatile int *)8 = 1;
    if (strcmp(argv[1], "wait") == 0)
        for (;;)
            pause();
    return 0;
}
