/*
 * Misuse the shim must catch: run as `misuse MODE`, it prints the pointer it
 * is about to pass (so the test knows the address the report must name),
 * then commits the error. The shim reports it and aborts; reaching the end
 * means the error went unnoticed (exit 0 then fails the test).
 *
 *   double     free(p); free(p)
 *   foreign    free() of a pointer into the stack
 *   header     free() of a block whose header was overwritten
 *   misaligned free(p + 8)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    } else if (strcmp(mode, "foreign") == 0) {
        victim = on_stack + 32;
        printf("%p\n", (void *)victim);
        fflush(stdout);
        free(victim);
    } else if (strcmp(mode, "header") == 0) {
        printf("%p\n", (void *)victim);
        fflush(stdout);
        memset(victim - 8, 0x41, 8); /* an underflow over the header */
        free(victim);
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
