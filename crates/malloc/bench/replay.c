/* Replays a FREESPACE_TRACE trace through this process's malloc (glibc's,
 * or the shim's under LD_PRELOAD) and prints how much anonymous memory the
 * heap made resident: the peak of RssAnon's growth (read after every
 * SAMPLE-th call) and the growth at the end.
 *
 *   replay TRACE [TOUCH]
 *
 * Each new block has its first TOUCH bytes written (default 4096: a program
 * writes the start of what it allocates, not necessarily all of a large
 * buffer; 0 writes nothing; a huge value writes every byte). Records are
 * replayed in the order of their sequence numbers, one thread (so a
 * multi-threaded trace replays as if one thread made every call).
 * Deterministic for a given trace, library and TOUCH: run it under glibc
 * and under the shim to compare (bench/replay.sh does both). The replayer's
 * own memory (the trace, the records, the table of live blocks) comes from
 * mmap and is resident before the baseline, so the allocator under test
 * sees the trace's calls only. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { HEADER = 16, RECORD = 32, ALLOC = 1, FREE = 2, REALLOC = 3 };

/* RssAnon is read after every SAMPLE-th call. */
enum { SAMPLE = 16 };

struct record {
    uint64_t seq, size, id, new_id;
    unsigned op, align_log2;
};

/* RssAnon from /proc/self/status, in KiB, read without stdio (whose
 * buffers would come from the allocator under test). */
static long rss_anon_kib(void) {
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0) return -1;
    ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (got <= 0) return -1;
    buf[got] = 0;
    const char *at = strstr(buf, "RssAnon:");
    return at ? atol(at + 8) : -1;
}

/* Sorts by sequence number in place, without allocating (qsort may call
 * malloc, which would warm the allocator under test): a heap sort, skipped
 * when the records are in order already (a one-thread trace). */
static void sift(struct record *r, size_t root, size_t n) {
    for (size_t child; (child = 2 * root + 1) < n; root = child) {
        if (child + 1 < n && r[child + 1].seq > r[child].seq) child++;
        if (r[root].seq >= r[child].seq) return;
        struct record t = r[root];
        r[root] = r[child];
        r[child] = t;
    }
}

static void sort_by_seq(struct record *r, size_t n) {
    size_t i = 1;
    while (i < n && r[i - 1].seq <= r[i].seq) i++;
    if (i >= n) return;
    for (i = n / 2; i-- > 0;) sift(r, i, n);
    for (i = n; i-- > 1;) {
        struct record t = r[0];
        r[0] = r[i];
        r[i] = t;
        sift(r, 0, i);
    }
}

/* Live blocks by id: open addressing, ids + 1 as keys (0: empty, ~0: gone). */
static uint64_t *keys;
static void **blocks;
static size_t cap;

static size_t slot(uint64_t key) {
    size_t i = (size_t)(key * 0x9E3779B97F4A7C15ull) & (cap - 1);
    while (keys[i] && keys[i] != key) i = (i + 1) & (cap - 1);
    return i;
}

static void *take(uint64_t id) {
    size_t i = slot(id + 1);
    if (keys[i] != id + 1) return NULL;
    keys[i] = ~0ull;
    return blocks[i];
}

static void put(uint64_t id, void *p) {
    size_t i = slot(id + 1);
    keys[i] = id + 1;
    blocks[i] = p;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: replay TRACE [TOUCH]\n");
        return 2;
    }
    size_t touch = argc > 2 ? strtoull(argv[2], NULL, 0) : 4096;
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        perror(argv[1]);
        return 1;
    }
    size_t len = (size_t)st.st_size;
    const unsigned char *bytes =
        len >= HEADER ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    if (bytes == MAP_FAILED || memcmp(bytes, "FSTRACE", 7) != 0) {
        fprintf(stderr, "%s: not a trace\n", argv[1]);
        return 1;
    }
    size_t n = (len - HEADER) / RECORD;
    for (cap = 1024; cap < 4 * n; cap *= 2) {}
    /* One anonymous mapping for the records and the table. */
    size_t records = (n ? n : 1) * sizeof(struct record);
    unsigned char *mem = mmap(NULL, records + cap * (sizeof *keys + sizeof *blocks),
                              PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return 1;
    struct record *r = (struct record *)mem;
    keys = (uint64_t *)(mem + records);
    blocks = (void **)(keys + cap);
    for (size_t i = 0; i < n; i++) {
        uint64_t w[4];
        memcpy(w, bytes + HEADER + i * RECORD, sizeof w);
        r[i] = (struct record){w[0], w[1], w[2] & ((1ull << 48) - 1), w[3] & ((1ull << 48) - 1),
                               (unsigned)(w[3] >> 48) & 0xff, (unsigned)(w[3] >> 56) & 63};
    }
    munmap((void *)bytes, len);
    close(fd);
    sort_by_seq(r, n);
    /* The table's pages are made resident before the baseline (volatile
     * stores: zeros into fresh pages could be dropped). */
    for (size_t i = 0; i < cap; i += 512) {
        ((volatile uint64_t *)keys)[i] = 0;
        ((void *volatile *)blocks)[i] = NULL;
    }
    long base = rss_anon_kib(), peak = 0;
    for (size_t i = 0; i < n; i++) {
        void *p;
        switch (r[i].op) {
        case ALLOC:
            if (r[i].align_log2 > 4) {
                if (posix_memalign(&p, (size_t)1 << r[i].align_log2, r[i].size)) p = NULL;
            } else {
                p = malloc(r[i].size);
            }
            if (p) memset(p, 0xa5, r[i].size < touch ? r[i].size : touch);
            put(r[i].id, p);
            break;
        case FREE:
            free(take(r[i].id));
            break;
        case REALLOC:
            p = realloc(take(r[i].id), r[i].size);
            put(r[i].new_id, p);
            break;
        }
        if (i % SAMPLE == 0) {
            long grown = rss_anon_kib() - base;
            if (grown > peak) peak = grown;
        }
    }
    long grown = rss_anon_kib() - base;
    if (grown > peak) peak = grown;
    printf("%zu calls: anonymous memory grown by %ld KiB at the peak, %ld KiB at the end\n", n,
           peak, grown);
    return 0;
}
