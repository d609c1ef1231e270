#ifndef PGHA_CLIBPQ_SHIM_H
#define PGHA_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#include <poll.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/eventfd.h>
#endif

/* Small, typed helpers used only by the PGClient module (which owns every libpq call). */

/* A libpq notice processor that drops the message: libpq's default prints NOTICEs to stderr. */
static void pgha_ignore_notice(void *arg, const char *message) {
    (void)arg;
    (void)message;
}

/* PQsetNoticeProcessor(conn, pgha_ignore_notice, NULL): silence NOTICE/WARNING printing. */
static inline void pgha_silence_notices(PGconn *conn) {
    PQsetNoticeProcessor(conn, pgha_ignore_notice, NULL);
}

/* clock_gettime(CLOCK_MONOTONIC) in nanoseconds: the cheapest clock read for query deadlines. */
static inline uint64_t pgha_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Outcome bits of pgha_wait. */
#define PGHA_WAIT_TIMEOUT 0
#define PGHA_WAIT_SOCKET 1
#define PGHA_WAIT_WAKE 2

/*
 * poll() on `fd` for `events` and, when wake_fd >= 0, on wake_fd for POLLIN.
 * Returns a mask of PGHA_WAIT_SOCKET / PGHA_WAIT_WAKE, PGHA_WAIT_TIMEOUT (0) when timeout_ms
 * passed, or -1 with errno set (EINTR included: the caller recomputes its timeout and retries).
 * Any revents on the socket (POLLERR, POLLHUP too) count as "ready": libpq then reports the error.
 */
static inline int pgha_wait(int fd, short events, int wake_fd, int timeout_ms) {
    struct pollfd fds[2];
    fds[0].fd = fd;
    fds[0].events = events;
    fds[0].revents = 0;
    nfds_t n = 1;
    if (wake_fd >= 0) {
        fds[1].fd = wake_fd;
        fds[1].events = POLLIN;
        fds[1].revents = 0;
        n = 2;
    }
    int rc = poll(fds, n, timeout_ms);
    if (rc <= 0) return rc;
    int mask = 0;
    if (fds[0].revents != 0) mask |= PGHA_WAIT_SOCKET;
    if (n == 2 && fds[1].revents != 0) mask |= PGHA_WAIT_WAKE;
    return mask;
}

/*
 * A wake-up channel for a waiting query: fds[0] is polled, fds[1] is written.
 * eventfd on Linux (fds[0] == fds[1]), a non-blocking pipe elsewhere. Returns 0 or -1 (errno).
 */
static inline int pgha_wake_create(int fds[2]) {
#if defined(__linux__)
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return -1;
    fds[0] = fd;
    fds[1] = fd;
    return 0;
#else
    if (pipe(fds) != 0) return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    return 0;
#endif
}

/* Makes the read end readable (never blocks). */
static inline void pgha_wake_signal(int write_fd) {
#if defined(__linux__)
    uint64_t one = 1;
    ssize_t rc = write(write_fd, &one, sizeof one);
#else
    char one = 1;
    ssize_t rc = write(write_fd, &one, 1);
#endif
    (void)rc; /* EAGAIN means it is already readable: nothing to do */
}

/* Empties the read end (never blocks). */
static inline void pgha_wake_drain(int read_fd) {
    char buffer[64];
    while (read(read_fd, buffer, sizeof buffer) > 0) {
    }
}

static inline void pgha_wake_close(int read_fd, int write_fd) {
    close(read_fd);
    if (write_fd != read_fd) close(write_fd);
}

#endif
