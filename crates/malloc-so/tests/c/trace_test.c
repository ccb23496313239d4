/*
 * A program for FREESPACE_TRACE: calls with sizes the test looks for in
 * the trace (1001 malloc, 3 x 1002 calloc, realloc to 5003, 4096-aligned
 * 1004), 6000 blocks of 1005 bytes (several buffer flushes), four threads
 * of 1000 malloc/free pairs of 2000 + t bytes each and one block of
 * 3000 + t freed by the main thread, and a forked child that allocates
 * 4242 bytes before it exits (with exit(), so the shim's exit flush runs
 * in the child too).
 *
 * Prints "trace_test: ok" and exits 0.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "trace_test: %s:%d: check failed: %s\n", __FILE__, \
                    __LINE__, #cond);                                          \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

static void *volatile sink;

static void *worker(void *arg) {
    size_t t = (size_t)(uintptr_t)arg;
    for (int i = 0; i < 1000; i++) {
        char *p = malloc(2000 + t);
        CHECK(p);
        p[0] = (char)i;
        sink = p;
        free(p);
    }
    return malloc(3000 + t);
}

int main(void) {
    char *p = malloc(1001);
    char *c = calloc(3, 1002);
    CHECK(p && c);
    memset(p, 7, 1001);
    p = realloc(p, 5003);
    CHECK(p && p[1000] == 7);
    void *a = NULL;
    CHECK(posix_memalign(&a, 4096, 1004) == 0);

    enum { N = 6000 };
    static char *many[N];
    for (int i = 0; i < N; i++) CHECK((many[i] = malloc(1005)));
    for (int i = 0; i < N; i++) free(many[i]);

    pthread_t threads[4];
    for (size_t t = 0; t < 4; t++)
        CHECK(pthread_create(&threads[t], NULL, worker, (void *)(uintptr_t)t) == 0);
    for (size_t t = 0; t < 4; t++) {
        void *block = NULL;
        CHECK(pthread_join(threads[t], &block) == 0 && block);
        free(block);
    }

    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        sink = malloc(4242);
        free(sink);
        exit(0);
    }
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);

    free(p);
    free(c);
    free(a);
    printf("trace_test: ok\n");
    return 0;
}
