/*
 * wire.c — pyvde-wirefilter's engine thread; no frame goes through Python.
 *
 * One thread, one poll loop: it reads batches of frames (recvmmsg) from the left and
 * right sides, lets wire_core decide each frame's fate, and puts every copy that
 * survives into a binary heap ordered by delivery time (ties keep arrival order). A
 * timerfd-free design: poll's timeout is the time until the earliest copy is due; due
 * copies are written with send() (non-blocking: a destination that is full refuses the
 * copy, counted as a send error, as a real wire loses what the far end cannot take).
 * The heap holds at most WIRE_MAX_QUEUED bytes whatever the configured capacity.
 *
 * Locking: w->lock is held while frames are decided and delivered, never while the
 * thread waits in poll; Python changes parameters under the same lock, so a change
 * applies from the next frame on.
 */
#define _GNU_SOURCE
#include "wire.h"
#include "clock.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BATCH 64
#define STREAM_BUF (512u << 10)

struct item {
    int64_t at_us;
    uint64_t seq;
    int dir;
    uint32_t len;
    uint8_t data[];
};

struct wire_engine {
    pthread_mutex_t lock;
    pthread_t thread;
    int running;
    volatile int stop;
    int wakefd, endfd;
    int ended;
    int maxframe;
    struct wire_side side[2];
    struct {                     /* stream sides: bytes read not yet parsed, records to write */
        struct stream_buf in, out;
        int gone;                /* the peer stopped reading (EPIPE) */
    } sb[2];
    struct wire_dir dir[2];
    struct wire_params params[WIRE_MAX_NODES][2];
    struct wire_markov markov;
    struct {                     /* node changes not yet read by Python (markov-debug) */
        int32_t from[64], to[64];
        unsigned head, tail;
    } mev;
    int mevfd;
    int blinkfd;                 /* --blink: a datagram per delivered copy, or -1 */
    char blinkmsg[128];
    struct sockaddr_un blinkto;
    int blinkidlen, mono;
    struct wire_stats st[2];
    struct item **heap;
    size_t nheap, capheap;
    uint64_t seq;
    uint8_t *rx;                 /* BATCH * (maxframe + 1) */
    /* copies due at once with nothing queued before them: sent from rx, no copy */
    int ndirect;
    struct iovec direct[BATCH * WIRE_MAX_COPIES];
    int direct_dir[BATCH * WIRE_MAX_COPIES];
    struct mmsghdr msg[BATCH];
    struct iovec iov[BATCH];
};

/* ---------------------------------------------------------------- the heap */

static int before(const struct item *a, const struct item *b)
{
    return a->at_us < b->at_us || (a->at_us == b->at_us && a->seq < b->seq);
}

static int heap_push(struct wire_engine *w, struct item *it)
{
    if (w->nheap == w->capheap) {
        size_t n = w->capheap ? w->capheap * 2 : 1024;
        struct item **h = realloc(w->heap, n * sizeof *h);
        if (!h)
            return -1;
        w->heap = h;
        w->capheap = n;
    }
    size_t i = w->nheap++;
    while (i > 0 && before(it, w->heap[(i - 1) / 2])) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = it;
    return 0;
}

static struct item *heap_pop(struct wire_engine *w)
{
    struct item *top = w->heap[0], *last = w->heap[--w->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= w->nheap)
            break;
        if (c + 1 < w->nheap && before(w->heap[c + 1], w->heap[c]))
            c++;
        if (!before(w->heap[c], last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (w->nheap)
        w->heap[i] = last;
    return top;
}

/* ---------------------------------------------------------------- frames */

static void take(struct wire_engine *w, int dir, const uint8_t *frame, uint32_t len, int64_t now)
{
    struct wire_verdict v;
    wire_admit(&w->dir[dir], &w->params[w->markov.current][dir], len, now, &v);
    if (v.action != WIRE_DELIVER)
        return;
    for (int k = 0; k < v.ncopies; k++) {
        if (v.at_us[k] <= now && w->nheap == 0 && v.nflips == 0) {
            w->direct[w->ndirect] = (struct iovec){(void *)frame, len};
            w->direct_dir[w->ndirect++] = dir;
            continue;
        }
        uint64_t held = w->st[0].queued_bytes + w->st[1].queued_bytes;
        struct item *it = held + len <= WIRE_MAX_QUEUED ? malloc(sizeof *it + len) : NULL;
        if (it) {
            it->at_us = v.at_us[k];
            it->seq = w->seq++;
            it->dir = dir;
            it->len = len;
            memcpy(it->data, frame, len);
            for (int f = 0; f < v.nflips; f++)   /* noise damages every copy alike */
                it->data[v.flip_bit[f] >> 3] ^= (uint8_t)(1u << (v.flip_bit[f] & 7));
        }
        if (!it || heap_push(w, it) < 0) {
            free(it);
            w->dir[dir].c.drop_capacity++;
            wire_delivered(&w->dir[dir], len);   /* it never enters the channel */
            w->dir[dir].c.delivered--;
            continue;
        }
        w->st[dir].queued_frames++;
        w->st[dir].queued_bytes += len;
    }
}

/* Writes what a stream side has buffered, as far as the pipe takes it now. */
static void flush_out(struct wire_engine *w, int dst)
{
    if (stream_flush(&w->sb[dst].out, w->side[dst].wfd) < 0)
        w->sb[dst].gone = 1;
}

/* --blink: one line "<id> <LR|RL|--> <length>" per copy sent; the length counts the
 * 2-byte record header as wirefilter's does. Lost if nobody listens. */
static void blink(struct wire_engine *w, struct mmsghdr *m, int k, int dir)
{
    for (int i = 0; i < k; i++) {
        int n = w->blinkidlen + snprintf(w->blinkmsg + w->blinkidlen,
                                         sizeof w->blinkmsg - w->blinkidlen, "%s %zu\n",
                                         w->mono ? "--" : dir == WIRE_LR ? "LR" : "RL",
                                         m[i].msg_hdr.msg_iov->iov_len + 2);
        if (sendto(w->blinkfd, w->blinkmsg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL,
                   (struct sockaddr *)&w->blinkto, sizeof w->blinkto) < 0) {
            /* a blink listener that is gone or slow loses lines, the wire does not care */
        }
    }
}

/* Sends k frames to side dst; what it cannot take now is lost (a send error). */
static void send_frames(struct wire_engine *w, int dst, struct mmsghdr *m, int k, int dir)
{
    if (w->side[dst].wfd < 0)
        return;
    if (w->blinkfd >= 0)
        blink(w, m, k, dir);
    if (w->side[dst].stream) {
        for (int i = 0; i < k; i++) {
            const struct iovec *v = m[i].msg_hdr.msg_iov;
            if (stream_put(&w->sb[dst].out, v->iov_base, (unsigned)v->iov_len) < 0)
                w->st[dir].send_errors++;   /* too long for a record, or no room: lost */
        }
        flush_out(w, dst);
        return;
    }
    int sent = 0;
    while (sent < k) {
        int r = sendmmsg(w->side[dst].wfd, m + sent, k - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r <= 0) {
            sent++;      /* the destination refused this copy: lost */
            w->st[dir].send_errors++;
            continue;
        }
        sent += r;
    }
}

/* Sends every copy that is due, in batches: one sendmmsg per destination per batch. */
static void deliver_due(struct wire_engine *w, int64_t now)
{
    while (w->nheap && w->heap[0]->at_us <= now) {
        struct item *due[BATCH];
        int n = 0;
        while (n < BATCH && w->nheap && w->heap[0]->at_us <= now)
            due[n++] = heap_pop(w);
        for (int dst = 0; dst < 2; dst++) {
            struct mmsghdr m[BATCH];
            struct iovec v[BATCH];
            int k = 0;
            for (int i = 0; i < n; i++) {
                if ((due[i]->dir == WIRE_LR ? 1 : 0) != dst)
                    continue;
                v[k] = (struct iovec){due[i]->data, due[i]->len};
                memset(&m[k], 0, sizeof m[k]);
                m[k].msg_hdr.msg_iov = &v[k];
                m[k].msg_hdr.msg_iovlen = 1;
                k++;
            }
            send_frames(w, dst, m, k, dst == 1 ? WIRE_LR : WIRE_RL);
        }
        for (int i = 0; i < n; i++) {
            struct item *it = due[i];
            wire_delivered(&w->dir[it->dir], it->len);
            w->st[it->dir].queued_frames--;
            w->st[it->dir].queued_bytes -= it->len;
            free(it);
        }
    }
}

/* Sends the copies that needed no waiting, straight from the receive buffer. */
static void send_direct(struct wire_engine *w)
{
    struct mmsghdr m[BATCH * WIRE_MAX_COPIES];
    for (int dir = 0; dir < 2; dir++) {
        int k = 0;
        for (int i = 0; i < w->ndirect; i++) {
            if (w->direct_dir[i] != dir)
                continue;
            memset(&m[k], 0, sizeof m[k]);
            m[k].msg_hdr.msg_iov = &w->direct[i];
            m[k].msg_hdr.msg_iovlen = 1;
            k++;
        }
        send_frames(w, dir == WIRE_LR ? 1 : 0, m, k, dir);
        for (int i = 0; i < w->ndirect; i++)
            if (w->direct_dir[i] == dir)
                wire_delivered(&w->dir[dir], (uint32_t)w->direct[i].iov_len);
    }
    w->ndirect = 0;
}

/* A stream side: read, then every whole record is a frame. -1: the side ended (end of
 * file, or a record longer than the largest frame: the stream cannot be trusted). */
static int receive_stream(struct wire_engine *w, int s, int64_t now)
{
    struct stream_buf *b = &w->sb[s].in;
    if (stream_fill(b, w->side[s].rfd, w->maxframe))
        return -1;
    int dir = s == 0 ? WIRE_LR : WIRE_RL;
    const uint8_t *frame;
    unsigned len;
    int r;
    while ((r = stream_next(b, w->maxframe, &frame, &len)) == STREAM_RECORD) {
        if (w->ndirect > BATCH * WIRE_MAX_COPIES - WIRE_MAX_COPIES)
            send_direct(w);   /* room for this record's copies (they point into b) */
        if (len >= 14)
            take(w, dir, frame, len, now);
    }
    return r == STREAM_BAD ? -1 : 0;
}

static int receive(struct wire_engine *w, int s, int64_t now)
{
    if (w->side[s].stream) {
        int r = receive_stream(w, s, now);
        send_direct(w);
        return r;
    }
    unsigned slot = (unsigned)w->maxframe + 1;
    for (int i = 0; i < BATCH; i++) {
        w->iov[i].iov_base = w->rx + (size_t)i * slot;
        w->iov[i].iov_len = slot;
        memset(&w->msg[i].msg_hdr, 0, sizeof w->msg[i].msg_hdr);
        w->msg[i].msg_hdr.msg_iov = &w->iov[i];
        w->msg[i].msg_hdr.msg_iovlen = 1;
    }
    int dir = s == 0 ? WIRE_LR : WIRE_RL;   /* frames from the left travel left -> right */
    /* with an interface speed, one frame at a time: the input stays busy after each */
    int vlen = w->params[w->markov.current][dir].speed.value > 0 ? 1 : BATCH;
    int n = recvmmsg(w->side[s].rfd, w->msg, vlen, MSG_DONTWAIT, NULL);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR || errno == ECONNREFUSED ? 0 : -1;
    for (int i = 0; i < n; i++) {
        unsigned len = w->msg[i].msg_len;
        if (len < 14 || (w->msg[i].msg_hdr.msg_flags & MSG_TRUNC))
            continue;
        take(w, dir, w->iov[i].iov_base, len, now);
    }
    send_direct(w);
    return 0;
}

/* Takes the Markov steps due, one by one, and queues each change for markov-debug. */
static void markov_due(struct wire_engine *w, int64_t now)
{
    struct wire_markov *m = &w->markov;
    while (m->numnodes > 1 && m->next_us <= now) {
        int from = m->current;
        int to = wire_markov_advance(m, m->next_us);
        if (to != from && w->mev.head - w->mev.tail < 64) {
            w->mev.from[w->mev.head % 64] = from;
            w->mev.to[w->mev.head % 64] = to;
            w->mev.head++;
            uint64_t one = 1;
            if (write(w->mevfd, &one, sizeof one) < 0) { /* already signalled */ }
        }
    }
}

static int64_t earliest(int64_t a, int64_t b) { return a < 0 || (b >= 0 && b < a) ? b : a; }

static void *engine(void *arg)
{
    struct wire_engine *w = arg;
    int why = WIRE_STOPPED;
    while (!w->stop) {
        struct pollfd pfd[7];
        int n = 0;
        int64_t wake = -1;          /* when something is due, -1: nothing */
        pthread_mutex_lock(&w->lock);
        int64_t now = monotonic_us();
        for (int s = 0; s < 2; s++) {
            /* an input busy at the interface speed is not read until it is free */
            int64_t busy = w->dir[s == 0 ? WIRE_LR : WIRE_RL].speed_free_us;
            int blocked = busy > now;
            pfd[n++] = (struct pollfd){blocked ? -1 : w->side[s].rfd, POLLIN, 0};
            if (blocked)
                wake = earliest(wake, busy);
        }
        if (w->nheap)
            wake = earliest(wake, w->heap[0]->at_us);
        if (w->markov.numnodes > 1)
            wake = earliest(wake, w->markov.next_us);
        pthread_mutex_unlock(&w->lock);
        for (int s = 0; s < 2; s++)
            pfd[n++] = (struct pollfd){w->side[s].watch, POLLIN, 0};
        pfd[n++] = (struct pollfd){w->wakefd, POLLIN, 0};
        for (int s = 0; s < 2; s++)   /* stream sides with records waiting for the pipe */
            pfd[n++] = (struct pollfd){stream_pending(&w->sb[s].out) ? w->side[s].wfd : -1,
                                       POLLOUT, 0};
        struct timespec ts, *timeout = NULL;
        if (wake >= 0) {
            int64_t left = wake > now ? wake - now : 0;
            ts = (struct timespec){left / 1000000, (left % 1000000) * 1000};
            timeout = &ts;
        }
        if (ppoll(pfd, n, timeout, NULL) < 0 && errno != EINTR)
            break;
        if (w->stop)
            break;
        if (pfd[2].revents || pfd[3].revents) {
            why = pfd[2].revents ? WIRE_END_LEFT : WIRE_END_RIGHT;
            break;
        }
        if (pfd[4].revents) {         /* parameters changed: the loop recomputes its timeout */
            uint64_t x;
            if (read(w->wakefd, &x, sizeof x) < 0) { /* nothing to drain */ }
        }
        pthread_mutex_lock(&w->lock);
        now = monotonic_us();
        markov_due(w, now);
        int gone = -1;
        for (int s = 0; s < 2; s++) {
            if (pfd[5 + s].revents)
                flush_out(w, s);
            if ((pfd[s].revents & (POLLIN | POLLERR | POLLHUP)) && receive(w, s, now) < 0)
                gone = s;
            if (w->side[s].stream && w->sb[s].gone)
                gone = s;
        }
        deliver_due(w, monotonic_us());
        pthread_mutex_unlock(&w->lock);
        if (gone >= 0) {
            why = gone == 0 ? WIRE_END_LEFT : WIRE_END_RIGHT;
            break;
        }
    }
    w->ended = why;
    uint64_t one = 1;
    if (write(w->endfd, &one, sizeof one) < 0) { /* nobody watches */ }
    return NULL;
}

/* ---------------------------------------------------------------- API */

struct wire_engine *wire_new(int maxframe, uint64_t seed)
{
    if (maxframe < 14 || maxframe > 65550)
        return NULL;
    struct wire_engine *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    pthread_mutex_init(&w->lock, NULL);
    w->maxframe = maxframe;
    w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->endfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->mevfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->blinkfd = -1;
    w->rx = malloc((size_t)BATCH * (maxframe + 1));
    wire_init(&w->dir[WIRE_LR], seed);
    wire_init(&w->dir[WIRE_RL], seed ^ 0x5851f42d4c957f2dULL);
    wire_markov_init(&w->markov, seed ^ 0x2545f4914f6cdd1dULL);
    for (int i = 0; i < WIRE_MAX_NODES; i++)
        for (int d = 0; d < 2; d++)
            wire_params_init(&w->params[i][d]);
    if (w->wakefd < 0 || w->endfd < 0 || w->mevfd < 0 || !w->rx) {
        wire_free(w);
        return NULL;
    }
    return w;
}

int wire_start(struct wire_engine *w, const struct wire_side *left, const struct wire_side *right)
{
    if (w->running)
        return -EALREADY;
    w->side[0] = *left;
    w->side[1] = *right;
    for (int s = 0; s < 2; s++) {
        if (!w->side[s].stream)
            continue;
        if (stream_alloc(&w->sb[s].in, STREAM_BUF) < 0 ||
            stream_alloc(&w->sb[s].out, STREAM_BUF) < 0)
            return -ENOMEM;
        int fds[2] = {w->side[s].rfd, w->side[s].wfd};
        for (int i = 0; i < 2; i++)
            if (fds[i] >= 0)
                fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    }
    w->stop = 0;
    w->ended = WIRE_RUNNING;
    int r = pthread_create(&w->thread, NULL, engine, w);
    if (r)
        return -r;
    w->running = 1;
    return 0;
}

void wire_stop(struct wire_engine *w)
{
    if (!w->running)
        return;
    w->stop = 1;
    uint64_t one = 1;
    if (write(w->wakefd, &one, sizeof one) < 0) { /* poll wakes on its timeout */ }
    pthread_join(w->thread, NULL);
    w->running = 0;
}

void wire_free(struct wire_engine *w)
{
    if (!w)
        return;
    wire_stop(w);
    for (size_t i = 0; i < w->nheap; i++)
        free(w->heap[i]);
    free(w->heap);
    free(w->rx);
    for (int s = 0; s < 2; s++) {
        stream_free(&w->sb[s].in);
        stream_free(&w->sb[s].out);
    }
    if (w->wakefd >= 0)
        close(w->wakefd);
    if (w->endfd >= 0)
        close(w->endfd);
    if (w->mevfd >= 0)
        close(w->mevfd);
    if (w->blinkfd >= 0)
        close(w->blinkfd);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

int wire_ended(struct wire_engine *w) { return w->ended; }
int wire_event_fd(struct wire_engine *w) { return w->endfd; }

struct wire_dir *wire_direction(struct wire_engine *w, int dir)
{
    return &w->dir[dir == WIRE_RL ? WIRE_RL : WIRE_LR];
}

struct wire_params *wire_params(struct wire_engine *w, int node, int dir)
{
    if (node < 0 || node >= WIRE_MAX_NODES)
        return NULL;
    return &w->params[node][dir == WIRE_RL ? WIRE_RL : WIRE_LR];
}

struct wire_markov *wire_markov(struct wire_engine *w) { return &w->markov; }

void wire_markov_restart(struct wire_engine *w) { wire_markov_start(&w->markov, monotonic_us()); }

int wire_markov_fd(struct wire_engine *w) { return w->mevfd; }

int wire_markov_events(struct wire_engine *w, int32_t *from, int32_t *to, int max)
{
    uint64_t x;
    if (read(w->mevfd, &x, sizeof x) < 0) { /* nothing signalled */ }
    pthread_mutex_lock(&w->lock);
    int n = 0;
    while (n < max && w->mev.tail != w->mev.head) {
        from[n] = w->mev.from[w->mev.tail % 64];
        to[n] = w->mev.to[w->mev.tail % 64];
        w->mev.tail++;
        n++;
    }
    pthread_mutex_unlock(&w->lock);
    return n;
}

int wire_set_blink(struct wire_engine *w, int fd, const char *path, const char *id, int mono)
{
    size_t len = strlen(id);
    if (len > 64 || strlen(path) >= sizeof w->blinkto.sun_path)
        return -EINVAL;
    w->blinkto.sun_family = AF_UNIX;
    strcpy(w->blinkto.sun_path, path);
    memcpy(w->blinkmsg, id, len);
    w->blinkmsg[len] = ' ';
    w->blinkidlen = (int)len + 1;
    w->mono = mono;
    w->blinkfd = fd;
    return 0;
}

void wire_lock(struct wire_engine *w) { pthread_mutex_lock(&w->lock); }

/* Python changed something: wake the thread so its next timeout counts with it. */
void wire_unlock(struct wire_engine *w)
{
    pthread_mutex_unlock(&w->lock);
    uint64_t one = 1;
    if (write(w->wakefd, &one, sizeof one) < 0) { /* already awake */ }
}

void wire_get_stats(struct wire_engine *w, int dir, struct wire_stats *out)
{
    pthread_mutex_lock(&w->lock);
    *out = w->st[dir == WIRE_RL ? WIRE_RL : WIRE_LR];
    pthread_mutex_unlock(&w->lock);
}
