/*
 * The C malloc family under LD_PRELOAD=libfreespace_malloc.so: every
 * function, the edge cases of the C standard and POSIX, threads freeing each
 * other's blocks, allocation from thread-exit destructors, and fork() in a
 * multithreaded process followed by malloc in the child.
 *
 * Prints "shim_test: ok" and exits 0 when everything holds; otherwise
 * prints the first failure and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "shim_test: %s:%d: check failed: %s (errno %d)\n",     \
                    __FILE__, __LINE__, #cond, errno);                             \
            exit(1);                                                               \
        }                                                                          \
    } while (0)

#define ALIGNED(p, a) (((uintptr_t)(p) & ((uintptr_t)(a) - 1)) == 0)

/* Keep the compiler from reasoning about malloc's results. */
static void *volatile sink;
static size_t volatile huge = SIZE_MAX;

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 31 + seed);
}

static int filled(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(i * 31 + seed)) return 0;
    return 1;
}

static void test_malloc_free(void) {
    void *zeros[64];
    for (int i = 0; i < 64; i++) {
        zeros[i] = malloc(0);
        CHECK(zeros[i] != NULL && ALIGNED(zeros[i], 16));
        for (int j = 0; j < i; j++) CHECK(zeros[i] != zeros[j]);
    }
    for (int i = 0; i < 64; i++) free(zeros[i]);
    free(NULL);

    for (size_t n = 1; n < 70000; n = n * 3 / 2 + 1) {
        unsigned char *p = malloc(n);
        CHECK(p != NULL && ALIGNED(p, 16));
        CHECK(malloc_usable_size(p) >= n);
        fill(p, malloc_usable_size(p), (unsigned)n);
        CHECK(filled(p, malloc_usable_size(p), (unsigned)n));
        free(p);
    }
    CHECK(malloc_usable_size(NULL) == 0);

    errno = 0;
    sink = malloc(huge);
    CHECK(sink == NULL && errno == ENOMEM);
    errno = 0;
    sink = malloc(huge / 2);
    CHECK(sink == NULL && errno == ENOMEM);
}

static void test_calloc(void) {
    for (size_t n = 1; n < 200000; n = n * 4 + 3) {
        unsigned char *p = malloc(n);
        memset(p, 0xab, n);
        free(p);
        unsigned char *q = calloc(n, 1);
        CHECK(q != NULL && ALIGNED(q, 16));
        for (size_t i = 0; i < n; i++) CHECK(q[i] == 0);
        free(q);
    }
    unsigned *a = calloc(1000, sizeof(unsigned));
    for (int i = 0; i < 1000; i++) CHECK(a[i] == 0);
    free(a);
    sink = calloc(0, 0);
    CHECK(sink != NULL);
    free(sink);
    errno = 0;
    sink = calloc(huge / 2, 3);
    CHECK(sink == NULL && errno == ENOMEM);
    errno = 0;
    sink = calloc(huge >> 30, huge >> 30);
    CHECK(sink == NULL && errno == ENOMEM);
}

static void test_realloc(void) {
    unsigned char *p = realloc(NULL, 10);
    CHECK(p != NULL);
    fill(p, 10, 1);
    size_t have = 10;
    size_t sizes[] = {11, 100, 1000, 1024, 1025, 4096, 65536, 1 << 20, 3 << 20, 5000, 17, 3, 250000, 1};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        p = realloc(p, n);
        CHECK(p != NULL && ALIGNED(p, 16));
        CHECK(filled(p, have < n ? have : n, 1));
        fill(p, n, 1);
        have = n;
    }
    errno = 0;
    CHECK(realloc(p, huge - 64) == NULL && errno == ENOMEM);
    CHECK(filled(p, have, 1)); /* untouched by the failure */
    errno = 0;
    CHECK(reallocarray(p, huge / 2, 4) == NULL && errno == ENOMEM);
    CHECK(filled(p, have, 1));
    p = reallocarray(p, 100, 8);
    CHECK(p != NULL && filled(p, have, 1));
    /* glibc: realloc(p, 0) frees p and returns NULL. */
    CHECK(realloc(p, 0) == NULL);
}

static void test_alignment(void) {
    for (size_t align = 1; align <= ((size_t)1 << 20); align <<= 1) {
        size_t sizes[] = {0, 1, align, 3 * align + 7};
        for (int s = 0; s < 4; s++) {
            size_t n = sizes[s];
            void *a = aligned_alloc(align, n);
            void *m = memalign(align, n);
            void *pm = NULL;
            errno = 1234;
            int rc = posix_memalign(&pm, align < sizeof(void *) ? sizeof(void *) : align, n);
            CHECK(rc == 0 && errno == 1234);
            void *all[] = {a, m, pm};
            for (int k = 0; k < 3; k++) {
                CHECK(all[k] != NULL);
                CHECK(ALIGNED(all[k], align < 16 ? 16 : align));
                CHECK(malloc_usable_size(all[k]) >= n);
                memset(all[k], 0x5a, n);
            }
            /* realloc of an aligned block keeps its contents */
            unsigned char *r = realloc(a, n + 10000);
            CHECK(r != NULL);
            for (size_t i = 0; i < n; i++) CHECK(r[i] == 0x5a);
            free(r);
            free(m);
            free(pm);
        }
    }
    void *pm = (void *)0x42;
    size_t bad[] = {0, 1, 2, 4, 12, 24, 48, 1000};
    for (int i = 0; i < 8; i++) {
        errno = 77;
        CHECK(posix_memalign(&pm, bad[i], 16) == EINVAL);
        CHECK(errno == 77 && pm == (void *)0x42);
    }
    errno = 77;
    CHECK(posix_memalign(&pm, 64, huge - 10) == ENOMEM && errno == 77 && pm == (void *)0x42);
    CHECK(posix_memalign(&pm, 64, 0) == 0 && pm != NULL && ALIGNED(pm, 64));
    free(pm);

    long page = sysconf(_SC_PAGESIZE);
    void *v = valloc(10);
    CHECK(v != NULL && ALIGNED(v, page));
    void *pv = pvalloc(1);
    CHECK(pv != NULL && ALIGNED(pv, page) && malloc_usable_size(pv) >= (size_t)page);
    memset(pv, 1, page);
    free(v);
    free(pv);
    /* memalign rounds an alignment that is not a power of two up. */
    void *m = memalign(48, 10);
    CHECK(m != NULL && ALIGNED(m, 64));
    free(m);
}

/* ------------------------------------------------------------------------ */
/* Threads freeing each other's blocks                                       */
/* ------------------------------------------------------------------------ */

#define SLOTS 4096
#define THREADS 8
static _Atomic(uintptr_t) slots[SLOTS];

static void *churn(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 1;
    for (int i = 0; i < 60000; i++) {
        seed = seed * 1103515245u + 12345u;
        size_t n = (seed >> 8) % 2000 + 1;
        if ((seed >> 20) % 16 == 0) n = (seed >> 4) % 100000 + 1;
        unsigned char *p = malloc(n);
        if (p == NULL) return (void *)1;
        p[0] = (unsigned char)n;
        p[n - 1] = (unsigned char)(n >> 3);
        uintptr_t old = atomic_exchange(&slots[(seed >> 12) % SLOTS], (uintptr_t)p);
        if (old) {
            unsigned char *q = (unsigned char *)old;
            size_t m = malloc_usable_size(q);
            if (m == 0) return (void *)2;
            free(q);
        }
    }
    return NULL;
}

static void test_threads(void) {
    pthread_t t[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, churn, (void *)i) == 0);
    for (int i = 0; i < THREADS; i++) {
        void *r;
        CHECK(pthread_join(t[i], &r) == 0);
        CHECK(r == NULL);
    }
    for (int i = 0; i < SLOTS; i++) free((void *)atomic_exchange(&slots[i], 0));
}

/* ------------------------------------------------------------------------ */
/* Allocation from thread-exit destructors (glibc calls our malloc from      */
/* __cxa_thread_atexit_impl, and frees its own list after running it).       */
/* ------------------------------------------------------------------------ */

extern int __cxa_thread_atexit_impl(void (*func)(void *), void *obj, void *dso_symbol);
extern void *__dso_handle;
static pthread_key_t key;
static atomic_int dtors_ran;

static void exit_work(void *block) {
    /* Runs during thread exit: malloc, realloc and free must all still work. */
    free(block);
    for (int i = 0; i < 200; i++) {
        char *p = malloc((size_t)(i * 13 % 3000) + 1);
        CHECK(p != NULL);
        p[0] = 1;
        p = realloc(p, 5000);
        CHECK(p != NULL && p[0] == 1);
        free(p);
    }
    atomic_fetch_add(&dtors_ran, 1);
}

static void *with_exit_destructors(void *arg) {
    (void)arg;
    /* Before this thread's first malloc: the registration itself callocs. */
    CHECK(__cxa_thread_atexit_impl(exit_work, malloc(100), &__dso_handle) == 0);
    /* A pthread key destructor runs after every TLS destructor, the shim's
       thread cache included. */
    CHECK(pthread_setspecific(key, malloc(200)) == 0);
    for (int i = 0; i < 1000; i++) free(malloc((size_t)i % 700 + 1));
    return NULL;
}

static void test_thread_exit(void) {
    CHECK(pthread_key_create(&key, exit_work) == 0);
    for (int round = 0; round < 50; round++) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, with_exit_destructors, NULL) == 0);
        for (int i = 0; i < 4; i++) CHECK(pthread_join(t[i], NULL) == 0);
    }
    CHECK(atomic_load(&dtors_ran) == 50 * 4 * 2);
}

/* ------------------------------------------------------------------------ */
/* fork() while other threads allocate, then malloc in the child             */
/* ------------------------------------------------------------------------ */

static atomic_int stop;

static void *hammer(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg + 7;
    void *keep[64] = {0};
    while (!atomic_load(&stop)) {
        seed = seed * 1103515245u + 12345u;
        int i = (seed >> 10) % 64;
        free(keep[i]);
        keep[i] = malloc((seed >> 16) % 5000 + 1);
    }
    for (int i = 0; i < 64; i++) free(keep[i]);
    return NULL;
}

static void *child_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 1000; i++) free(malloc((size_t)i + 1));
    return NULL;
}

static void test_fork(void) {
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, hammer, (void *)i) == 0);
    for (int round = 0; round < 40; round++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            /* A lock held by a thread that is gone would hang here. */
            alarm(10);
            for (int i = 0; i < 5000; i++) {
                void *p = malloc((size_t)(i * 37) % 20000 + 1);
                if (!p) _exit(3);
                p = realloc(p, 30000);
                if (!p) _exit(4);
                free(p);
            }
            pthread_t c;
            if (pthread_create(&c, NULL, child_thread, NULL) != 0) _exit(5);
            pthread_join(c, NULL);
            _exit(0);
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "shim_test: fork round %d: child status %#x%s\n", round, status,
                    WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM ? " (hung: SIGALRM)" : "");
            exit(1);
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++) CHECK(pthread_join(t[i], NULL) == 0);
}

/* fork() while other threads are exiting (their thread caches go back to
   the shared depot in thread-exit destructors) */

static void *short_lived(void *arg) {
    (void)arg;
    void *p[40];
    for (int i = 0; i < 40; i++) p[i] = malloc((size_t)(i * 29) % 1000 + 1);
    for (int i = 0; i < 40; i++) free(p[i]);
    for (int i = 0; i < 40; i++) p[i] = malloc((size_t)(i * 13) % 900 + 1);
    return p[7]; /* the rest stay cached or live until exit */
}

static void *spawner(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        pthread_t t;
        if (pthread_create(&t, NULL, short_lived, NULL) != 0) continue;
        void *r;
        pthread_join(t, &r);
        free(r);
    }
    return NULL;
}

static void test_fork_while_threads_exit(void) {
    atomic_store(&stop, 0);
    pthread_t s[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&s[i], NULL, spawner, NULL) == 0);
    for (int round = 0; round < 60; round++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            alarm(10);
            for (int i = 0; i < 2000; i++) free(malloc((size_t)(i * 7) % 1500 + 1));
            /* a thread that starts and exits in the child */
            pthread_t c;
            if (pthread_create(&c, NULL, child_thread, NULL) != 0) _exit(5);
            pthread_join(c, NULL);
            _exit(0);
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "shim_test: fork-while-exiting round %d: child status %#x%s\n", round,
                    status, WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM ? " (hung: SIGALRM)" : "");
            exit(1);
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) CHECK(pthread_join(s[i], NULL) == 0);
}

int main(void) {
    test_malloc_free();
    test_calloc();
    test_realloc();
    test_alignment();
    test_threads();
    test_thread_exit();
    test_fork();
    test_fork_while_threads_exit();
    printf("shim_test: ok\n");
    return 0;
}
