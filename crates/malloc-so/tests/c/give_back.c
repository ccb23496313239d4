/* Memory given back under the shim: 200 MB of 256-byte blocks, written,
 * then freed, then malloc_trim(0); a 1 GiB calloc. Prints resident MiB
 * (VmRSS) at each point, one "name value" per line:
 *   peak, freed, trimmed, calloc (resident growth of calloc(1, 1 GiB)),
 *   trim_result (malloc_trim's return). */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
}

int main(void) {
    enum { N = 200 * 1000 * 1000 / 256 };
    void **b = malloc(N * sizeof *b);
    if (!b) return 1;
    for (long i = 0; i < N; i++) {
        b[i] = malloc(256);
        if (!b[i]) return 1;
        memset(b[i], 7, 256);
    }
    printf("peak %ld\n", rss_kib() / 1024);
    for (long i = 0; i < N; i++) free(b[i]);
    printf("freed %ld\n", rss_kib() / 1024);
    printf("trim_result %d\n", malloc_trim(0));
    printf("trimmed %ld\n", rss_kib() / 1024);
    long before = rss_kib();
    char *z = calloc(1, 1L << 30);
    if (!z || z[0] != 0 || z[(1L << 30) - 1] != 0) return 2;
    printf("calloc %ld\n", (rss_kib() - before) / 1024);
    free(z);
    free(b);
    return 0;
}
