/*
 * peak_rss OUT PRELOAD PROGRAM [ARGS...]
 *
 * Runs PROGRAM (with LD_PRELOAD=PRELOAD unless PRELOAD is empty), writes
 * its peak resident memory in KiB (ru_maxrss from wait4) and the CPU time
 * it and its waited-for children used in microseconds (user + system) to
 * the file OUT, as "KIB MICROSECONDS\n", and exits as PROGRAM did.
 *
 * Why a helper: Linux carries the RSS high-water mark of the address space
 * a process execs from into its ru_maxrss, so a program spawned straight
 * from the test process (tens of MiB resident) would report at least the
 * test's RSS. Forked from this small helper, the floor is the helper's own
 * few hundred KiB. The helper itself runs without the shim.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: peak_rss OUT PRELOAD PROGRAM [ARGS...]\n");
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("peak_rss: fork");
        return 2;
    }
    if (pid == 0) {
        /* Killed with the helper (the test kills the helper on a hang). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (argv[2][0] != '\0')
            setenv("LD_PRELOAD", argv[2], 1);
        execvp(argv[3], argv + 3);
        perror(argv[3]);
        _exit(127);
    }
    int status;
    struct rusage usage;
    while (wait4(pid, &status, 0, &usage) < 0) {
        if (errno != EINTR) {
            perror("peak_rss: wait4");
            return 2;
        }
    }
    FILE *out = fopen(argv[1], "w");
    long long cpu_us = (long long)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000000 +
                       usage.ru_utime.tv_usec + usage.ru_stime.tv_usec;
    if (out == NULL || fprintf(out, "%ld %lld\n", usage.ru_maxrss, cpu_us) < 0 ||
        fclose(out) != 0) {
        perror(argv[1]);
        return 2;
    }
    if (WIFSIGNALED(status)) {
        signal(WTERMSIG(status), SIG_DFL);
        raise(WTERMSIG(status));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 2;
}
