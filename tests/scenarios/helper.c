/* A stand-in workload for the scenario tests, copied under the names the
 * scenarios need (server, graceful, crasher).
 *   helper sleep              sleep until killed
 *   helper threads            start a second thread named "worker", print its tid, sleep
 *   helper segv               fault on a null pointer
 *   helper handle-term        on SIGTERM keep running (a slow shutdown)
 *   helper hog MIB [hold]     allocate and touch MIB MiB, 1 MiB at a time (until
 *                             the OOM killer stops it); with "hold", print "held"
 *                             and keep the memory
 *   helper ignore-urg         ignore SIGURG, print "ready", sleep
 *   helper forge-kill PID     name itself "\e[31mS\nFORGED:" with prctl(PR_SET_NAME),
 *                             then SIGKILL PID
 *   helper forge-c1-kill PID  the same with DEL and a C1 CSI (U+009B, in UTF-8):
 *                             "\x7f\u009b31mC1", what JSON leaves as it is
 *   helper sigstorm PID       send SIGURG to PID as fast as kill(2) goes, until
 *                             killed (a signal storm)
 *   helper sigburst N PID     send N SIGURG to PID as fast as kill(2) goes,
 *                             print "done", sleep
 *                             (SIGURG: ignored by default, so outside the signals
 *                             a default tracer watches; the storms then reach only
 *                             the tracers that ask for every signal, and never fill
 *                             the rings of the scenarios running beside them)
 *   helper thp-fallback MIB   fragment memory, then fault in transparent huge
 *                             pages until one falls back (see fragment_then_thp)
 *   helper nowait-tcp MIB CONNS  the same with the kept pages mlocked, then fill
 *                             loopback TCP connections nobody reads until order-3
 *                             page fragments run out (see fragment_then_nowait_tcp)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
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
 * free memory is plenty but in single pages. With `lock`, the pages kept
 * are mlocked (MLOCK_ONFAULT: the ones given back stay out), so that
 * compaction, told by the scenario not to move unevictable pages, cannot
 * put the free ones back together. */
static int fragment(long mib, int lock) {
    const long page = 4096;
    long small = mib << 20;
    char *a = mmap(NULL, small, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) return 2;
    madvise(a, small, MADV_NOHUGEPAGE);
    for (long off = 0; off < small; off += page) a[off] = 1;
    for (long off = page; off < small; off += 2 * page) madvise(a + off, page, MADV_DONTNEED);
    if (lock && mlock2(a, small, MLOCK_ONFAULT) != 0) return 2;
    return 0;
}

/* Faults in huge pages (which take the free memory still contiguous) until
 * one falls back; returns how many it got, or -1 if none fell back. */
static long fill_huge(void) {
    const long huge = 2 << 20;
    long span = 512L << 20; /* more than the contiguous memory left */
    char *raw = mmap(NULL, span + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return -1;
    char *b = (char *)(((unsigned long)raw + huge - 1) & ~(unsigned long)(huge - 1));
    madvise(b, span, MADV_HUGEPAGE);
    long before = thp_fault_fallback();
    for (long off = 0; off < span; off += huge) {
        b[off] = 1;
        if (thp_fault_fallback() != before) return off / huge;
    }
    return -1;
}

/* Fragments MIB MiB, then faults in huge pages until one falls back.
 * Prints the number of huge pages it got and exits: the memory is freed. */
static int fragment_then_thp(long mib) {
    if (fragment(mib, 0) != 0) return 2;
    long got = fill_huge();
    if (got < 0) return 3;
    printf("%ld\n", got);
    fflush(stdout);
    return 0;
}

/* Free blocks of order 3 or more in the zones ordinary kernel allocations
 * use (all but DMA), from /proc/buddyinfo. */
static long free_blocks_from_order_3(void) {
    FILE *f = fopen("/proc/buddyinfo", "r");
    char line[512];
    long total = 0;
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        char zone[32];
        int used;
        if (sscanf(line, "Node %*d, zone %31s%n", zone, &used) != 1) continue;
        if (strcmp(zone, "DMA") == 0) continue;
        char *p = line + used;
        for (int order = 0;; order++) {
            char *end;
            long n = strtol(p, &end, 10);
            if (end == p) break;
            if (order >= 3) total += n;
            p = end;
        }
    }
    fclose(f);
    return total;
}

/* A loopback TCP connection: the sending end, non-blocking, and the
 * receiving end, which is never read, so that what is sent stays in memory. */
static int connect_pair(int listener, int *sender, int *receiver) {
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    if (getsockname(listener, (struct sockaddr *)&addr, &len) != 0) return -1;
    *sender = socket(AF_INET, SOCK_STREAM, 0);
    if (*sender < 0 || connect(*sender, (struct sockaddr *)&addr, len) != 0) return -1;
    *receiver = accept(listener, NULL, NULL);
    if (*receiver < 0) return -1;
    return fcntl(*sender, F_SETFL, O_NONBLOCK);
}

/* Fragments MIB MiB (mlocked), takes the contiguous memory left with huge
 * pages, then sends on loopback TCP connections nobody reads. A TCP sender
 * copies its data into page fragments refilled by skb_page_frag_refill: an
 * order-3 allocation without direct reclaim (__GFP_NORETRY, __GFP_NOWARN)
 * that falls back to one page when it fails. Connections are filled until
 * no free block of order 3 is left, then one more, so that refills fail;
 * at most CONNS. Prints how many connections it filled, then exits. */
static int fragment_then_nowait_tcp(long mib, long conns) {
    if (fragment(mib, 1) != 0) return 2;
    if (fill_huge() < 0) return 3;
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(listener, (int)conns) != 0)
        return 4;
    static char chunk[4096];
    memset(chunk, 'x', sizeof chunk);
    long filled = 0, after_exhaustion = -1;
    while (filled < conns && after_exhaustion != 0) {
        int sender, receiver;
        if (connect_pair(listener, &sender, &receiver) != 0) return 5;
        while (write(sender, chunk, sizeof chunk) > 0) {
        }
        if (errno != EAGAIN) return 6;
        filled++;
        if (after_exhaustion > 0) after_exhaustion--;
        if (after_exhaustion < 0 && free_blocks_from_order_3() == 0) after_exhaustion = 1;
    }
    printf("%ld\n", filled);
    fflush(stdout);
    return 0;
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
    } else if (strcmp(mode, "ignore-urg") == 0) {
        signal(SIGURG, SIG_IGN);
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
            if (kill(target, SIGURG) != 0) return 1;
        }
    } else if (strcmp(mode, "sigburst") == 0) {
        long n = argc > 2 ? atol(argv[2]) : 0;
        pid_t target = argc > 3 ? (pid_t)atol(argv[3]) : 0;
        if (n <= 0 || target <= 0) return 2;
        for (long i = 0; i < n; i++) {
            if (kill(target, SIGURG) != 0) return 1;
        }
        printf("done\n");
        fflush(stdout);
    } else if (strcmp(mode, "thp-fallback") == 0) {
        return fragment_then_thp(argc > 2 ? atol(argv[2]) : 256);
    } else if (strcmp(mode, "nowait-tcp") == 0) {
        return fragment_then_nowait_tcp(argc > 2 ? atol(argv[2]) : 256, argc > 3 ? atol(argv[3]) : 64);
    } else if (strcmp(mode, "handle-term") == 0) {
        signal(SIGTERM, on_term);
        printf("ready\n");
        fflush(stdout);
    }
    for (;;) pause();
}
