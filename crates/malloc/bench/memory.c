/* Resident memory under a malloc: issue 14's cases. Prints one line per
 * measurement, "name value unit".
 *
 *   memory calloc      calloc(1, 1 GiB): seconds, resident MiB after it and after free
 *   memory threads     8 threads each allocate 100 MB in 16-512 B blocks and free them
 *                      all, twice; resident MiB at each peak, after the frees, and
 *                      after malloc_trim(0)
 */
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* VmRSS or VmHWM from /proc/self/status, in MiB. */
static double status_mib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0) kb = atof(line + strlen(key) + 1);
    if (f) fclose(f);
    return kb / 1024.0;
}

#define THREADS 8
#define MB_EACH 100
static void **blocks[THREADS];
static size_t counts[THREADS];
static pthread_barrier_t barrier;

static void *work(void *arg) {
    uintptr_t t = (uintptr_t)arg;
    uint64_t x = 0x9E3779B97F4A7C15ull * (t + 1);
    size_t cap = (size_t)MB_EACH * 1000000 / 16 + 1, n = 0, bytes = 0;
    void **b = malloc(cap * sizeof *b);
    while (bytes < (size_t)MB_EACH * 1000000) {
        x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
        size_t sz = 16 + (size_t)((x * 0x2545F4914F6CDD1Dull) >> 32) % 497;
        char *p = malloc(sz);
        if (!p) { perror("malloc"); exit(1); }
        memset(p, 1, sz);
        b[n++] = p;
        bytes += sz;
    }
    blocks[t] = b;
    counts[t] = n;
    pthread_barrier_wait(&barrier); /* all allocated: the peak */
    pthread_barrier_wait(&barrier); /* measured */
    for (size_t i = 0; i < n; i++) free(b[i]);
    free(b);
    return NULL;
}

static void threads(int round) {
    pthread_t th[THREADS];
    pthread_barrier_init(&barrier, NULL, THREADS + 1);
    for (uintptr_t t = 0; t < THREADS; t++) pthread_create(&th[t], NULL, work, (void *)t);
    pthread_barrier_wait(&barrier);
    printf("round%d_peak_rss %.1f MiB\n", round, status_mib("VmRSS:"));
    pthread_barrier_wait(&barrier);
    for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
    printf("round%d_after_free_rss %.1f MiB\n", round, status_mib("VmRSS:"));
    malloc_trim(0);
    printf("round%d_after_trim_rss %.1f MiB\n", round, status_mib("VmRSS:"));
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "calloc";
    if (strcmp(what, "calloc") == 0) {
        double t0 = now();
        char *p = calloc(1, (size_t)1 << 30);
        double t1 = now();
        if (!p) { perror("calloc"); return 1; }
        if (p[12345] != 0 || p[((size_t)1 << 30) - 1] != 0) { fprintf(stderr, "not zero\n"); return 1; }
        printf("calloc_1GiB_ms %.3f ms\n", (t1 - t0) * 1e3);
        printf("calloc_1GiB_rss %.1f MiB\n", status_mib("VmRSS:"));
        free(p);
        printf("after_free_rss %.1f MiB\n", status_mib("VmRSS:"));
    } else {
        threads(1);
        threads(2);
        printf("peak_hwm %.1f MiB\n", status_mib("VmHWM:"));
    }
    return 0;
}
