/* Threads that each allocate and free MB megabytes (default 100) in small
 * blocks (16..512 B), all at once: the shape of issue 15's shim test.
 * `churn` keeps a ring of 1024 live blocks per thread (each malloc frees
 * the block it replaces); `hold` keeps every block until the thread has
 * allocated all MB, then frees them all. Prints the wall seconds.
 *
 *   threads THREADS [MB] [churn|hold]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RING 1024
static size_t bytes_per_thread;
static size_t ring_len = RING;

static void *work(void *arg) {
    uint64_t x = 0x9E3779B97F4A7C15ull * (uintptr_t)arg + 1;
    void **ring = calloc(ring_len, sizeof *ring);
    size_t done = 0, i = 0;
    while (done < bytes_per_thread) {
        x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
        size_t n = 16 + (size_t)((x * 0x2545F4914F6CDD1Dull) >> 32) % 497;
        free(ring[i]);
        char *p = malloc(n);
        if (!p) { perror("malloc"); exit(1); }
        p[0] = 1; p[n - 1] = 2;
        ring[i] = p;
        i = (i + 1) % ring_len;
        done += n;
    }
    for (i = 0; i < ring_len; i++) free(ring[i]);
    free(ring);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 8;
    bytes_per_thread = (size_t)(argc > 2 ? atoi(argv[2]) : 100) << 20;
    if (argc > 3 && strcmp(argv[3], "hold") == 0) ring_len = bytes_per_thread / 16 + 1;
    pthread_t t[256];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int k = 0; k < threads; k++) pthread_create(&t[k], NULL, work, (void *)(uintptr_t)k);
    for (int k = 0; k < threads; k++) pthread_join(t[k], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.3f\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
    return 0;
}
