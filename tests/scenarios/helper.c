/* A stand-in workload for the scenario tests, copied under the names the
 * scenarios need (server, graceful, crasher).
 *   helper sleep              sleep until killed
 *   helper threads            start a second thread named "worker", print its tid, sleep
 *   helper segv               fault on a null pointer
 *   helper handle-term        on SIGTERM keep running (a slow shutdown)
 *   helper hog MIB [hold]     allocate and touch MIB MiB, 1 MiB at a time (until
 *                             the OOM killer stops it); with "hold", print "held"
 *                             and keep the memory
 *   helper ignore-usr1        ignore SIGUSR1, print "ready", sleep
 *   helper forge-kill PID     name itself "\e[31mS\nFORGED:" with prctl(PR_SET_NAME),
 *                             then SIGKILL PID
 *   helper forge-c1-kill PID  the same with DEL and a C1 CSI (U+009B, in UTF-8):
 *                             "\x7f\u009b31mC1", what JSON leaves as it is
 *   helper sigstorm PID       send SIGUSR1 to PID as fast as kill(2) goes, until
 *                             killed (a signal storm)
 *   helper sigburst N PID     send N SIGUSR1 to PID as fast as kill(2) goes,
 *                             print "done", sleep
 *   helper thp-fallback MIB   fragment memory, then fault in transparent huge
 *                             pages until one falls back (see fragment_then_thp)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static void *worker(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "worker");
    printf("%ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    for (;;) pause();
    return NULL;
}

static void on_term(int sig) { (void)sig; }

/* The kernel's count of huge-page faults that fell back to small pages. */
static long thp_fault_fallback(void) {
    FILE *f = fopen("/proc/vmstat", "r");
    char name[64];
    long value, found = -1;
    if (!f) return -1;
    while (fscanf(f, "%63s %ld", name, &value) == 2) {
        if (strcmp(name, "thp_fault_fallback") == 0) found = value;
    }
    fclose(f);
    return found;
}

/* Touches MIB MiB of small pages and gives every other one back, so that
 * free memory is plenty but in single pages, then faults in huge pages
 * (which take the free memory still contiguous) until one falls back.
 * Prints the number of huge pages it got and exits: the memory is freed. */
static int fragment_then_thp(long mib) {
    const long page = 4096, huge = 2 << 20;
    long small = mib << 20;
    char *a = mmap(NULL, small, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) return 2;
    madvise(a, small, MADV_NOHUGEPAGE);
    for (long off = 0; off < small; off += page) a[off] = 1;
    for (long off = page; off < small; off += 2 * page) madvise(a + off, page, MADV_DONTNEED);
    long span = 512L << 20; /* more than the contiguous memory left */
    char *raw = mmap(NULL, span + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return 2;
    char *b = (char *)(((unsigned long)raw + huge - 1) & ~(unsigned long)(huge - 1));
    madvise(b, span, MADV_HUGEPAGE);
    long before = thp_fault_fallback();
    for (long off = 0; off < span; off += huge) {
        b[off] = 1;
        if (thp_fault_fallback() != before) {
            printf("%ld\n", off / huge);
            fflush(stdout);
            return 0;
        }
    }
    return 3;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "sleep";
    if (strcmp(mode, "threads") == 0) {
        pthread_t t;
        pthread_create(&t, NULL, worker, NULL);
    } else if (strcmp(mode, "segv") == 0) {
        volatile int *p = NULL;
        *p = 1;
    } else if (strcmp(mode, "hog") == 0) {
        long mib = argc > 2 ? atol(argv[2]) : 1024;
        for (long i = 0; i < mib; i++) {
            char *chunk = malloc(1 << 20);
            if (!chunk) return 2;
            memset(chunk, 1, 1 << 20);
        }
        if (argc > 3 && strcmp(argv[3], "hold") == 0) {
            printf("held\n");
            fflush(stdout);
        } else {
            return 0;
        }
    } else if (strcmp(mode, "ignore-usr1") == 0) {
        signal(SIGUSR1, SIG_IGN);
        printf("ready\n");
        fflush(stdout);
    } else if (strcmp(mode, "forge-kill") == 0) {
        pid_t target = argc > 2 ? (pid_t)atol(argv[2]) : 0;
        if (target <= 0) return 2;
        prctl(PR_SET_NAME, "\033[31mS\nFORGED:");
        return kill(target, SIGKILL) == 0 ? 0 : 1;
    } else if (strcmp(mode, "forge-c1-kill") == 0) {
        pid_t target = argc > 2 ? (pid_t)atol(argv[2]) : 0;
        if (target <= 0) return 2;
        prctl(PR_SET_NAME, "\x7f\xc2\x9b" "31mC1");
        return kill(target, SIGKILL) == 0 ? 0 : 1;
    } else if (strcmp(mode, "sigstorm") == 0) {
        pid_t target = argc > 2 ? (pid_t)atol(argv[2]) : 0;
        if (target <= 0) return 2;
        for (;;) {
            if (kill(target, SIGUSR1) != 0) return 1;
        }
    } else if (strcmp(mode, "sigburst") == 0) {
        long n = argc > 2 ? atol(argv[2]) : 0;
        pid_t target = argc > 3 ? (pid_t)atol(argv[3]) : 0;
        if (n <= 0 || target <= 0) return 2;
        for (long i = 0; i < n; i++) {
            if (kill(target, SIGUSR1) != 0) return 1;
        }
        printf("done\n");
        fflush(stdout);
    } else if (strcmp(mode, "thp-fallback") == 0) {
        return fragment_then_thp(argc > 2 ? atol(argv[2]) : 256);
    } else if (strcmp(mode, "handle-term") == 0) {
        signal(SIGTERM, on_term);
        printf("ready\n");
        fflush(stdout);
    }
    for (;;) pause();
}
