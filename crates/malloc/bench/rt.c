/* A SCHED_FIFO thread and a normal thread pinned to one CPU, both
 * allocating and freeing 20 KB blocks for SECONDS (default 2): the
 * real-time thread's worst single malloc+free, in milliseconds. A waiter
 * that spins while the preempted holder cannot run (it shares the CPU with
 * a real-time spinner) waits until real-time throttling lets the holder
 * run; a waiter that sleeps hands it the CPU. Needs CAP_SYS_NICE (root).
 *
 *   rt [SECONDS]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile int stop;
static double seconds;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void pin(void) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(0, &s);
    pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

static void *normal(void *arg) {
    (void)arg;
    pin();
    while (!stop) {
        char *p = malloc(20000);
        p[0] = 1;
        free(p);
    }
    return NULL;
}

static void *realtime(void *arg) {
    double *worst = arg, end = now() + seconds;
    pin();
    struct sched_param sp = {.sched_priority = 10};
    if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) != 0) {
        fprintf(stderr, "rt: SCHED_FIFO refused (needs CAP_SYS_NICE)\n");
        exit(2);
    }
    while (now() < end) {
        for (int i = 0; i < 100; i++) {
            double t0 = now();
            char *p = malloc(20000);
            p[0] = 1;
            free(p);
            double dt = now() - t0;
            if (dt > *worst) *worst = dt;
        }
        /* Let the normal thread run, so that it is inside malloc when the
         * real-time thread comes back. */
        usleep(200);
    }
    stop = 1;
    return NULL;
}

int main(int argc, char **argv) {
    seconds = argc > 1 ? atof(argv[1]) : 2.0;
    double worst = 0;
    pthread_t a, b;
    pthread_create(&a, NULL, normal, NULL);
    pthread_create(&b, NULL, realtime, &worst);
    pthread_join(b, NULL);
    pthread_join(a, NULL);
    printf("%.3f\n", worst * 1e3);
    return 0;
}
