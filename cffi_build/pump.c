/*
 * pump.c — the frame pump of pyvde-plug and pyvde-plug2tap: no frame ever touches Python.
 *
 * Theory of operation
 * ===================
 * pump_run() is one blocking call, made by Python with the GIL released. It owns the
 * calling thread until something ends the link: an end reaches end of file, a watched fd
 * (a switch's control connection) becomes readable, or the stop fd (Python's signal
 * wake-up pipe) does. Python then decides what to do (exit, or reconnect and call again).
 *
 * Two directions, a -> b and b -> a, each with its own batch of up to BATCH frames.
 * A direction alternates between reading a batch from its source (recvmmsg on a
 * datagram socket, read() until EAGAIN on a tap, whole records out of a byte buffer on a
 * stream) and writing that batch to its destination (sendmmsg, write() per frame, or
 * records appended to an output buffer). While a batch is not fully written the
 * direction waits for POLLOUT on the destination and reads nothing more: a slow
 * destination pushes back on its source (a tap's queue, the peer's socket buffer, a
 * pipe) instead of the pump dropping frames. Only frames a destination refuses for good
 * (interface down, peer gone, too long for it) are dropped and counted.
 *
 * Buffers: each direction owns BATCH slots of maxframe + 1 bytes (the extra byte tells
 * an oversize tap read from a full-size one), a stream input buffer and a stream output
 * buffer. Frames are copied once, from the kernel into a slot, except stream records,
 * which are copied again out of the input buffer, and into the output buffer.
 *
 * Taps opened with IFF_VNET_HDR (pump_end.vnet, as the plugs open them) carry a
 * virtio_net_hdr before every frame. Reading, it is skipped (no offload is asked for,
 * so the kernel hands over plain, checksummed frames). Writing, a run of consecutive
 * segments of one TCP stream in the batch goes as one GSO packet (tap_gso.c): one write
 * and one pass through the host's IP and TCP instead of one per segment, and one ACK
 * back for the run. Counted per frame as before, and in `merged`.
 *
 * Stream parsing (stream.c, shared with wirefilter's engine) keeps a proper byte buffer:
 * records split or joined across reads come out whole; zero-length records are skipped;
 * a length above maxframe is an impossible record: the pump returns PUMP_BAD_STREAM with
 * the length instead of resynchronising on garbage (which is what the vde2 and vdeplug4
 * parsers silently do).
 *
 * Every fd is switched to non-blocking for the call and its flags restored afterwards.
 */
#define _GNU_SOURCE
#include "pump.h"
#include "clock.h"
#include "stream.h"
#include "tap_gso.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define BATCH 64
#define MIN_FRAME 14
#define STREAM_IN (256u << 10)
#define STREAM_OUT (512u << 10)
#define DRAIN_MS 2000
#define DRAIN_MAX_MS 10000

struct dir {
    struct pump_end *src, *dst;
    struct pump_dir_stats *st;
    int eof;                    /* the source ended */
    int bad;                    /* the stream source held an impossible record: end after
                                   the frames before it are written */
    unsigned slot;              /* bytes per slot */
    uint8_t *slots;
    unsigned len[BATCH];        /* 0: nothing to send in this slot */
    unsigned n, next;           /* frames in the batch, next one to write */
    struct stream_buf in;       /* stream source: bytes read, not yet parsed */
    struct stream_buf out;      /* stream destination: records not yet written */
    uint64_t written;           /* successful writes: progress, while draining */
    struct mmsghdr msg[BATCH];
    struct iovec iov[BATCH];
};

static int transient(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

static int pending(const struct dir *d)
{
    return d->next < d->n || stream_pending(&d->out);
}

/* A stream source has a whole record (or an impossible header) waiting in its buffer. */
static int buffered_record(const struct dir *d, int maxframe)
{
    return d->src->kind == PUMP_STREAM && !d->bad && stream_has_record(&d->in, maxframe);
}

/* ---------------------------------------------------------------- reading */

/* Keeps frame i of the batch if its length is acceptable. */
static void accept_len(struct dir *d, unsigned i, size_t len, int truncated, int maxframe)
{
    d->len[i] = 0;
    if (truncated || len > (size_t)maxframe)
        d->st->oversize++;
    else if (len > 0 && len < MIN_FRAME)
        d->st->runts++;
    else
        d->len[i] = (unsigned)len;   /* zero-length datagrams (a vde_close) are ignored */
}

/* Returns 0, 1 at end of file, or -errno. */
static int read_dgram(struct dir *d, int maxframe)
{
    for (unsigned i = 0; i < BATCH; i++) {
        d->iov[i].iov_base = d->slots + (size_t)i * d->slot;
        d->iov[i].iov_len = d->slot;
        memset(&d->msg[i].msg_hdr, 0, sizeof d->msg[i].msg_hdr);
        d->msg[i].msg_hdr.msg_iov = &d->iov[i];
        d->msg[i].msg_hdr.msg_iovlen = 1;
    }
    int r = recvmmsg(d->src->rfd, d->msg, BATCH, MSG_DONTWAIT, NULL);
    if (r < 0) {
        if (transient(errno) || errno == ECONNREFUSED || errno == ECONNRESET || errno == ENOTCONN)
            return 0;   /* nothing now, or an ICMP error for an earlier udp:// send */
        return -errno;
    }
    for (int i = 0; i < r; i++)
        accept_len(d, i, d->msg[i].msg_len, d->msg[i].msg_hdr.msg_flags & MSG_TRUNC, maxframe);
    d->n = r;
    d->next = 0;
    return 0;
}

static int read_tap(struct dir *d, int maxframe)
{
    unsigned i = 0;
    uint8_t vnet[TAP_VNET_HDR_LEN];   /* no offloads are asked for: nothing to act on */
    while (i < BATCH) {
        struct iovec v[2] = {{vnet, sizeof vnet}, {d->slots + (size_t)i * d->slot, d->slot}};
        int hdr = d->src->vnet ? 1 : 0;
        ssize_t r = readv(d->src->rfd, v + 1 - hdr, 1 + hdr);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (transient(errno))
                break;
            if (i == 0)
                return 1;   /* the device went away (EBADFD, EIO...) */
            break;
        }
        if (r == 0) {
            if (i == 0)
                return 1;
            break;
        }
        if (hdr)
            r = r > TAP_VNET_HDR_LEN ? r - TAP_VNET_HDR_LEN : 0;
        accept_len(d, i, (size_t)r, 0, maxframe);
        i++;
    }
    d->n = i;
    d->next = 0;
    return 0;
}

/* Moves up to BATCH whole records from the input buffer into the batch. An impossible
 * length stops the parse and marks the direction bad (the frames before it still go). */
static void parse_stream(struct dir *d, int maxframe, struct pump_stats *ps, int src_is_b)
{
    unsigned i = 0;
    while (i < BATCH) {
        const uint8_t *frame;
        unsigned len;
        int r = stream_next(&d->in, maxframe, &frame, &len);
        if (r == STREAM_BAD) {
            ps->bad_len = len;
            ps->bad_end = src_is_b;
            d->bad = 1;
        }
        if (r != STREAM_RECORD)
            break;
        memcpy(d->slots + (size_t)i * d->slot, frame, len);
        accept_len(d, i, len, 0, maxframe);
        i++;
    }
    d->n = i;
    d->next = 0;
}

/* Returns 0, 1 at end of file (whole records still buffered are parsed first), or -errno. */
static int read_stream(struct dir *d, int maxframe, struct pump_stats *ps, int src_is_b)
{
    if (!buffered_record(d, maxframe)) {
        int r = stream_fill(&d->in, d->src->rfd, maxframe);
        if (r)
            return r;   /* STREAM_EOF is 1: end of file */
    }
    parse_stream(d, maxframe, ps, src_is_b);
    return 0;
}

/* ---------------------------------------------------------------- writing */

/* Returns 0 (done or waiting for POLLOUT), 1 if the destination ended, or -errno. */
static int write_dgram(struct dir *d)
{
    while (d->next < d->n) {
        unsigned k = 0, first = d->next;
        unsigned idx[BATCH];
        for (unsigned i = first; i < d->n; i++) {
            if (!d->len[i])
                continue;
            d->iov[k].iov_base = d->slots + (size_t)i * d->slot;
            d->iov[k].iov_len = d->len[i];
            memset(&d->msg[k].msg_hdr, 0, sizeof d->msg[k].msg_hdr);
            d->msg[k].msg_hdr.msg_iov = &d->iov[k];
            d->msg[k].msg_hdr.msg_iovlen = 1;
            if (d->dst->peer_len) {
                d->msg[k].msg_hdr.msg_name = d->dst->peer;
                d->msg[k].msg_hdr.msg_namelen = d->dst->peer_len;
            }
            idx[k++] = i;
        }
        if (k == 0) {
            d->next = d->n;
            break;
        }
        int r = sendmmsg(d->dst->wfd, d->msg, k, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r > 0) {
            d->written += r;
            for (int j = 0; j < r; j++) {
                d->st->frames++;
                d->st->bytes += d->len[idx[j]];
            }
            d->next = idx[r - 1] + 1;
            continue;
        }
        if (r < 0 && (transient(errno) || errno == ENOBUFS))
            return 0;   /* wait for POLLOUT */
        d->st->send_errors++;   /* this frame cannot go (peer gone, too long...): drop it */
        d->next = idx[0] + 1;
    }
    return 0;
}

/* One write to a tap: the frame at d->next alone, or (vnet) the run of frames from
 * there that tap_gso_plan() merges. Returns how many frames it took (>= 1), or -errno. */
static int write_tap_once(struct dir *d, int merge)
{
    unsigned i = d->next;
    if (!d->dst->vnet) {
        ssize_t r = write(d->dst->wfd, d->slots + (size_t)i * d->slot, d->len[i]);
        return r < 0 ? -errno : 1;
    }
    const uint8_t *frames[BATCH];
    uint32_t lens[BATCH];
    unsigned m = 0;
    for (unsigned j = i; j < d->n && d->len[j] && merge; j++, m++) {
        frames[m] = d->slots + (size_t)j * d->slot;
        lens[m] = d->len[j];
    }
    if (m == 0) {
        frames[0] = d->slots + (size_t)i * d->slot;
        lens[0] = d->len[i];
        m = 1;
    }
    return tap_gso_write(d->dst->wfd, frames, lens, m, 0);
}

static int write_tap(struct dir *d)
{
    int merge = 1;
    while (d->next < d->n) {
        unsigned i = d->next;
        if (!d->len[i]) {
            d->next++;
            continue;
        }
        int r = write_tap_once(d, merge);
        if (r == -EINTR)
            continue;
        if (r == -EAGAIN || r == -EWOULDBLOCK)
            return 0;
        if (r == -EINVAL && merge && d->dst->vnet) {
            merge = 0;   /* a kernel that refuses the merged packet: this one goes alone */
            continue;
        }
        merge = 1;
        if (r < 0) {
            if (r == -EBADFD || r == -ENODEV)
                return 1;
            d->st->send_errors++;   /* interface down (EIO), bad frame (EINVAL) */
            d->next++;
            continue;
        }
        for (int j = 0; j < r; j++, d->next++) {
            d->written++;
            d->st->frames++;
            d->st->bytes += d->len[d->next];
        }
        if (r > 1)
            d->st->merged += r;
    }
    return 0;
}

/* Moves frames of the batch into the output buffer while they fit. */
static void queue_records(struct dir *d)
{
    for (; d->next < d->n; d->next++) {
        unsigned len = d->len[d->next];
        if (!len)
            continue;
        int r = stream_put(&d->out, d->slots + (size_t)d->next * d->slot, len);
        if (r == -ENOBUFS)
            break;   /* no room until the buffer is written */
        if (r == -EMSGSIZE) {
            d->st->oversize++;
        } else {
            d->st->frames++;
            d->st->bytes += len;
        }
    }
}

static int write_stream(struct dir *d)
{
    for (;;) {
        queue_records(d);
        if (!stream_pending(&d->out))
            return 0;
        ssize_t r = stream_flush(&d->out, d->dst->wfd);
        if (r < 0)
            return (r == -EPIPE || r == -ECONNRESET) ? 1 : (int)r;
        if (r > 0)
            d->written++;
        if (stream_pending(&d->out)) {   /* the destination is full: wait for POLLOUT */
            queue_records(d);
            return 0;
        }
        if (d->next == d->n)
            return 0;
    }
}

static int write_out(struct dir *d)
{
    switch (d->dst->kind) {
    case PUMP_DGRAM: return write_dgram(d);
    case PUMP_TAP: return write_tap(d);
    case PUMP_STREAM: return write_stream(d);
    default:
        for (; d->next < d->n; d->next++)
            if (d->len[d->next]) {
                d->st->frames++;
                d->st->bytes += d->len[d->next];
            }
        return 0;
    }
}

/* write_out() for direction k (0: a -> b, 1: b -> a), as pump_run() sees it: 0, the
 * PUMP_END_* of the end it writes to if that end has gone, or -errno. */
static int write_dir(struct dir *d, int k)
{
    int w = write_out(d);
    if (w == 1)
        return k == 0 ? PUMP_END_B : PUMP_END_A;
    return w < 0 ? w : 0;
}

static int read_in(struct dir *d, int maxframe, struct pump_stats *ps, int src_is_b)
{
    switch (d->src->kind) {
    case PUMP_DGRAM: return read_dgram(d, maxframe);
    case PUMP_TAP: return read_tap(d, maxframe);
    case PUMP_STREAM: return read_stream(d, maxframe, ps, src_is_b);
    default: return 0;
    }
}

/* ---------------------------------------------------------------- the loop */

#define MAXFDS 16

struct saved_flags {
    int fd[8], flags[8], n;
};

static void nonblock(struct saved_flags *s, int fd)
{
    if (fd < 0)
        return;
    for (int i = 0; i < s->n; i++)
        if (s->fd[i] == fd)
            return;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || s->n == 8)
        return;
    s->fd[s->n] = fd;
    s->flags[s->n++] = fl;
    if (!(fl & O_NONBLOCK))
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void restore(struct saved_flags *s)
{
    for (int i = 0; i < s->n; i++)
        fcntl(s->fd[i], F_SETFL, s->flags[i]);
}

struct pump {
    int maxframe;
    struct dir dirs[2];
};

/* (Re)binds a direction to this run's ends; buffers are made once and kept. */
static int dir_bind(struct dir *d, struct pump_end *src, struct pump_end *dst,
                    struct pump_dir_stats *st, int maxframe)
{
    d->src = src;
    d->dst = dst;
    d->st = st;
    d->eof = 0;
    d->bad = 0;
    d->slot = (unsigned)maxframe + 1;
    if (!d->slots)
        d->slots = malloc((size_t)BATCH * d->slot);
    if (!d->slots)
        return -ENOMEM;
    if (src->kind == PUMP_STREAM && stream_alloc(&d->in, STREAM_IN) < 0)
        return -ENOMEM;
    if (dst->kind == PUMP_STREAM && stream_alloc(&d->out, STREAM_OUT) < 0)
        return -ENOMEM;
    if (dst->kind != PUMP_STREAM)
        d->out.start = d->out.end = 0;   /* nothing half-written can go to another kind */
    return 0;
}

static void dir_free(struct dir *d)
{
    free(d->slots);
    stream_free(&d->in);
    stream_free(&d->out);
}

struct pump *pump_new(int maxframe)
{
    if (maxframe < MIN_FRAME || maxframe > PUMP_MAX_FRAME)
        return NULL;
    struct pump *p = calloc(1, sizeof *p);
    if (p)
        p->maxframe = maxframe;
    return p;
}

void pump_free(struct pump *p)
{
    if (!p)
        return;
    dir_free(&p->dirs[0]);
    dir_free(&p->dirs[1]);
    free(p);
}

int pump_run(struct pump *p, struct pump_end *a, struct pump_end *b, int stop_fd,
             struct pump_stats *stats)
{
    int maxframe = p->maxframe;
    memset(stats, 0, sizeof *stats);
    struct dir *dirs = p->dirs;
    int rc = dir_bind(&dirs[0], a, b, &stats->a_to_b, maxframe);
    if (!rc)
        rc = dir_bind(&dirs[1], b, a, &stats->b_to_a, maxframe);
    struct saved_flags saved = {.n = 0};
    nonblock(&saved, a->rfd);
    nonblock(&saved, a->wfd);
    nonblock(&saved, b->rfd);
    nonblock(&saved, b->wfd);

    int64_t drain_until = -1;   /* after an end of file: how long the other way may drain */
    uint64_t drained = 0;       /* its writes when the deadline was last set */
    int64_t drain_end = -1;     /* the end of any draining, progress or not */
    while (rc == 0) {
        /* records already buffered need no poll: parse and write them now */
        for (int k = 0; k < 2 && rc == 0; k++) {
            struct dir *d = &dirs[k];
            while (rc == 0 && !pending(d) && buffered_record(d, maxframe)) {
                parse_stream(d, maxframe, stats, k);
                rc = write_dir(d, k);
            }
            if (rc == 0 && d->bad && !pending(d))
                rc = PUMP_BAD_STREAM;
        }
        /* an end of file ends the pump once what was read is written, both ways, and what
         * was already waiting to be read the other way too (the other way may go on while it
         * makes progress, for DRAIN_MAX_MS at most; a peer that stops reading for DRAIN_MS
         * cannot hold us) */
        for (int k = 0; k < 2 && rc == 0; k++) {
            if (!dirs[k].eof || pending(&dirs[k]) || buffered_record(&dirs[k], maxframe))
                continue;
            struct dir *o = &dirs[1 - k];
            int64_t t = monotonic_ms();
            if (drain_end < 0)
                drain_end = t + DRAIN_MAX_MS;
            if (drain_until < 0 || o->written != drained) {   /* progress: more time */
                drain_until = t + DRAIN_MS;
                drained = o->written;
            }
            int waiting = 0;   /* frames still queued on the other way's source */
            if (!o->eof && o->src->kind != PUMP_NULL && o->src->rfd >= 0) {
                struct pollfd q = {o->src->rfd, POLLIN, 0};
                waiting = poll(&q, 1, 0) > 0 && (q.revents & POLLIN);
            }
            if ((!pending(o) && !waiting) || t >= drain_until || t >= drain_end)
                rc = k == 0 ? PUMP_END_A : PUMP_END_B;
            else if (!pending(o) && waiting && !o->eof) {
                /* read what is queued now: the loop below would not poll for it */
                int got = read_in(o, maxframe, stats, 1 - k);
                if (got == 1)
                    o->eof = 1;
                else if (got < 0)
                    rc = got;
                else if (o->n && pending(o))
                    rc = write_dir(o, 1 - k);   /* that end is gone too */
            }
        }
        if (rc)
            break;
        struct pollfd pfd[MAXFDS];
        int role[MAXFDS];   /* 0/1: dir's source, 2/3: dir's destination, 4: watch, 5: stop */
        int n = 0;
        for (int k = 0; k < 2; k++) {
            struct dir *d = &dirs[k];
            if (pending(d)) {
                pfd[n] = (struct pollfd){d->dst->wfd, POLLOUT, 0};
                role[n++] = 2 + k;
            } else if (!d->eof && d->src->kind != PUMP_NULL) {
                pfd[n] = (struct pollfd){d->src->rfd, POLLIN, 0};
                role[n++] = k;
            }
        }
        struct pump_end *ends[2] = {a, b};
        for (int e = 0; e < 2; e++)
            for (int w = 0; w < PUMP_MAX_WATCH; w++)
                if (ends[e]->watch[w] >= 0) {
                    pfd[n] = (struct pollfd){ends[e]->watch[w], POLLIN, 0};
                    role[n++] = 4;
                }
        if (stop_fd >= 0) {
            pfd[n] = (struct pollfd){stop_fd, POLLIN, 0};
            role[n++] = 5;
        }
        int timeout = -1;
        if (drain_until >= 0) {
            int64_t left = drain_until - monotonic_ms();
            timeout = left > 0 ? (int)left : 0;
        }
        int r = poll(pfd, n, timeout);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        for (int i = 0; i < n && rc == 0; i++) {
            if (!pfd[i].revents)
                continue;
            if (role[i] == 5)
                rc = PUMP_STOPPED;
            else if (role[i] == 4)
                rc = PUMP_WATCHED;
        }
        for (int i = 0; i < n && rc == 0; i++) {
            if (!pfd[i].revents || role[i] >= 4)
                continue;
            int k = role[i] & 1;
            struct dir *d = &dirs[k];
            if (role[i] < 2) {
                int got = read_in(d, maxframe, stats, k);
                if (got == 1)
                    d->eof = 1;
                else if (got != 0)
                    rc = got;
                else if (d->n && pending(d))
                    got = write_out(d);   /* most of the time the destination has room */
                if (got == 1 && !d->eof)
                    rc = k == 0 ? PUMP_END_B : PUMP_END_A;
                else if (got < 0 && rc == 0)
                    rc = got;
            } else {
                rc = write_dir(d, k);
            }
        }
    }
    restore(&saved);
    return rc;
}
