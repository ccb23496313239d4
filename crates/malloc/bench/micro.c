/*
 * malloc/free pairs: each thread keeps 256 live blocks of 1-128 bytes and
 * replaces a random one 20 million times. Prints nanoseconds per pair (wall
 * time over all threads' pairs). Used by measure.sh, and with fewer pairs
 * by callgrind.sh (instruction counts):
 *
 *   micro [THREADS [PAIRS]]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long PAIRS = 20000000L;

static void *work(void *arg) {
    void *keep[256] = {0};
    unsigned s = (unsigned)(size_t)arg + 1;
    for (long i = 0; i < PAIRS; i++) {
        s = s * 1103515245u + 12345u;
        int k = (s >> 8) & 255;
        free(keep[k]);
        keep[k] = malloc(((s >> 16) & 127) + 1);
    }
    for (int k = 0; k < 256; k++) free(keep[k]);
    return NULL;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1;
    if (n < 1 || n > 64) return 2;
    if (argc > 2) PAIRS = atol(argv[2]);
    if (PAIRS < 1) return 2;
    pthread_t t[64];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, work, (void *)(size_t)i);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("%.1f\n", ns / ((double)PAIRS * n));
    return 0;
}
