/*
 * Misuse the shim must catch: run as `misuse MODE`, it prints the pointer it
 * is about to pass (so the test knows the address the report must name),
 * then commits the error. The shim reports it and aborts; reaching the end
 * means the error went unnoticed (exit 0 then fails the test).
 *
 *   double       free(p); free(p)
 *   double-N     the same for p = malloc(N) (every route: magazines, slab,
 *                buddy)
 *   double-align-N  the same for p = aligned_alloc(4096, N)
 *   foreign      free() of a pointer into the stack
 *   wild         free((void *)0x10): outside every reservation, unreadable
 *   mapping      free() of the first byte of a fresh mapping whose previous
 *                page is unmapped
 *   header       free() of a block whose header was overwritten (a block
 *                of 1000 bytes: blocks of up to 512 have no header)
 *   misaligned   free(p + 8)
 *   double-thread  free(p) on another thread (p then lies in that
 *                thread's magazine, in the depot once it exits), then
 *                free(p) here
 *   uaf          free(p); a write through p; malloc of the same size (the
 *                write-after-free check, at reuse: the report names p),
 *                for p of a class made warm first (the check covers the
 *                thread caches' blocks, not the small heap's)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void *free_elsewhere(void *p) {
    free(p);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    const char *mode = argv[1];
    char *p = malloc(24);
    char *volatile victim = p;
    _Alignas(16) char on_stack[64];
    if (strcmp(mode, "double") == 0) {
        printf("%p\n", (void *)victim);
        fflush(stdout);
        free(victim);
        free(victim);
    } else if (strncmp(mode, "double-align-", 13) == 0) {
        victim = aligned_alloc(4096, (size_t)atol(mode + 13));
        printf("%p\n", (void *)victim);
        fflush(stdout);
        free(victim);
        free(victim);
    } else if (strncmp(mode, "double-", 7) == 0) {
        victim = malloc((size_t)atol(mode + 7));
        memset(victim, 0x5a, (size_t)atol(mode + 7));
        printf("%p\n", (void *)victim);
        fflush(stdout);
        free(victim);
        free(victim);
    } else if (strcmp(mode, "wild") == 0) {
        victim = (char *)0x10;
        printf("%p\n", (void *)victim);
        fflush(stdout);
        free(victim);
    } else if (strcmp(mode, "mapping") == 0) {
        long page = sysconf(_SC_PAGESIZE);
        char *two = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (two == MAP_FAILED) return 3;
        munmap(two, page); /* the page before `victim` is unmapped */
        victim = two + page;
        printf("%p\n", (void *)victim);
        fflush(stdout);
        free(victim);
    } else if (strcmp(mode, "foreign") == 0) {
        victim = on_stack + 32;
        printf("%p\n", (void *)victim);
        fflush(stdout);
        free(victim);
    } else if (strcmp(mode, "header") == 0) {
        victim = malloc(1000);
        printf("%p\n", (void *)victim);
        fflush(stdout);
        memset(victim - 8, 0x41, 8); /* an underflow over the header */
        free(victim);
    } else if (strcmp(mode, "double-thread") == 0) {
        pthread_t other;
        printf("%p\n", (void *)victim);
        fflush(stdout);
        if (pthread_create(&other, NULL, free_elsewhere, victim) != 0) return 3;
        pthread_join(other, NULL);
        free(victim);
    } else if (strcmp(mode, "uaf") == 0) {
        /* The check covers blocks of the thread caches: first make the
         * class warm (its first blocks come from the small heap), then
         * take a block that is a magazine round. */
        for (int i = 0; i < 512; i++) (void)!malloc(24);
        victim = malloc(24);
        printf("%p\n", (void *)victim);
        fflush(stdout);
        free(victim);
        memcpy(victim, "dangling", 8); /* a write through a dangling pointer */
        char *again = malloc(24);      /* the same block, reused at once */
        printf("not caught: %p\n", (void *)again);
    } else if (strcmp(mode, "misaligned") == 0) {
        victim = p + 8;
        printf("%p\n", (void *)victim);
        fflush(stdout);
        free(victim);
    } else {
        return 2;
    }
    return 0;
}
