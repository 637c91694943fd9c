/*
 * tcp_fast.c — see tcp_fast.h.
 */
#define _GNU_SOURCE
#include "tcp_fast.h"
#include "slirp_fast.h"
#include "slirp_link.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define SLOTS 8192              /* open addressing, linear probing; at most 4096 used */
#define BATCH 64
#define FRAME_MAX 65550
#define OUT_CAP (8u << 20)      /* frames built in one batch (or pump) */
#define OUT_FRAMES 4096
#define PEEK_SEGS 512           /* segments filled by one peek */
#define HDR 54                  /* Ethernet + IPv4 + TCP, no options */
#define LOWAT_CAP (8u << 20)
#ifndef SO_PEEK_OFF
#define SO_PEEK_OFF 42
#endif

struct fast_table {
    int link_fd;
    int link_kind;              /* SLIRP_LINK_* */
    int partial;                /* a tap: TCP checksums left for it to complete */
    uint8_t router_mac[6];
    int count;
    struct fast_conn *slot[SLOTS];
    /* received frames */
    uint8_t *in;                /* BATCH * FRAME_MAX */
    uint32_t in_len[BATCH];
    int py_n;
    int py_idx[BATCH];
    /* connections touched in the batch */
    struct fast_conn *touched[BATCH + 1];
    int n_touched;
    int changed[2 * BATCH + 2];
    int n_changed;
    /* frames out */
    uint8_t *out;
    size_t out_len;
    uint32_t out_lens[OUT_FRAMES];
    int out_n;
    int unsent_first;           /* frames from here on were not sent */
    size_t unsent_off;
    uint8_t discard[65536];
};

static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ------------------------------------------------------------------ the table */

static uint32_t key_hash(const uint8_t *gip, uint16_t gport, const uint8_t *rip, uint16_t rport)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 4; i++) h = (h ^ gip[i]) * 16777619u;
    for (int i = 0; i < 4; i++) h = (h ^ rip[i]) * 16777619u;
    h = (h ^ gport) * 16777619u;
    h = (h ^ rport) * 16777619u;
    return h ^ (h >> 15);
}

static int key_eq(const struct fast_conn *c, const uint8_t *gip, uint16_t gport,
                  const uint8_t *rip, uint16_t rport)
{
    return c->guest_port == gport && c->remote_port == rport
           && !memcmp(c->guest_ip, gip, 4) && !memcmp(c->remote_ip, rip, 4);
}

static struct fast_conn *lookup(struct fast_table *t, const uint8_t *gip, uint16_t gport,
                                const uint8_t *rip, uint16_t rport)
{
    uint32_t i = key_hash(gip, gport, rip, rport) & (SLOTS - 1);
    for (;;) {
        struct fast_conn *c = t->slot[i];
        if (!c)
            return NULL;
        if (key_eq(c, gip, gport, rip, rport))
            return c;
        i = (i + 1) & (SLOTS - 1);
    }
}

struct fast_table *fast_table_new(int link_fd, int link_kind, const uint8_t *router_mac)
{
    struct fast_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->in = malloc((size_t)BATCH * FRAME_MAX);
    t->out = malloc(OUT_CAP);
    if (!t->in || !t->out) {
        fast_table_free(t);
        return NULL;
    }
    t->link_fd = link_fd;
    t->link_kind = link_kind;
    t->partial = link_kind == SLIRP_LINK_TAP;
    memcpy(t->router_mac, router_mac, 6);
    return t;
}

void fast_table_free(struct fast_table *t)
{
    if (!t)
        return;
    free(t->in);
    free(t->out);
    free(t);
}

int fast_add(struct fast_table *t, struct fast_conn *c)
{
    if (c->in_table || t->count >= SLOTS / 2)
        return -1;
    uint32_t i = key_hash(c->guest_ip, c->guest_port, c->remote_ip, c->remote_port) & (SLOTS - 1);
    while (t->slot[i]) {
        if (key_eq(t->slot[i], c->guest_ip, c->guest_port, c->remote_ip, c->remote_port))
            return -1;
        i = (i + 1) & (SLOTS - 1);
    }
    t->slot[i] = c;
    t->count++;
    c->in_table = 1;
    c->eject = FAST_IN;
    c->kick = c->ack_due = c->touched = 0;
    return 0;
}

void fast_remove(struct fast_table *t, struct fast_conn *c, int reason)
{
    if (!c->in_table)
        return;
    uint32_t i = key_hash(c->guest_ip, c->guest_port, c->remote_ip, c->remote_port) & (SLOTS - 1);
    while (t->slot[i] != c) {
        if (!t->slot[i])
            return;
        i = (i + 1) & (SLOTS - 1);
    }
    /* backward-shift deletion: no tombstones, probe sequences stay short */
    uint32_t hole = i, j = i;
    for (;;) {
        j = (j + 1) & (SLOTS - 1);
        struct fast_conn *d = t->slot[j];
        if (!d)
            break;
        uint32_t home = key_hash(d->guest_ip, d->guest_port, d->remote_ip, d->remote_port)
                        & (SLOTS - 1);
        /* d may move into the hole if its home is not cyclically in (hole, j] */
        if ((j > hole && (home <= hole || home > j)) || (j < hole && home <= hole && home > j)) {
            t->slot[hole] = d;
            hole = j;
        }
    }
    t->slot[hole] = NULL;
    t->count--;
    c->in_table = 0;
    c->eject = reason;
}

/* ------------------------------------------------------------------ frames out */

static uint32_t wire_seq(const struct fast_conn *c, uint64_t off) { return c->iss + (uint32_t)off; }
static uint32_t wire_ack(const struct fast_conn *c) { return c->guest_isn + (uint32_t)c->rcv_nxt; }

/* The headers of a segment to the guest whose payload (n bytes) is already at f + HDR. */
static void fill_segment(struct fast_table *t, const struct fast_conn *c, uint8_t *f,
                         uint64_t off, uint8_t flags, uint32_t n)
{
    slirp_tcp_headers(f, c->guest_mac, t->router_mac, c->remote_ip, c->guest_ip,
                      c->remote_port, c->guest_port, wire_seq(c, off), wire_ack(c), flags,
                      (uint16_t)c->window_field, n, t->partial);
}

static void push_frame(struct fast_table *t, uint32_t len)
{
    t->out_lens[t->out_n++] = len;
    t->out_len += len;
}

static void send_ack(struct fast_table *t, struct fast_conn *c)
{
    if (t->out_n >= OUT_FRAMES || t->out_len + HDR > OUT_CAP)
        return;                 /* the guest retransmits; the next ACK covers it */
    fill_segment(t, c, t->out + t->out_len, c->snd_max, 0x10, 0);
    push_frame(t, HDR);
}

static void flush_out(struct fast_table *t)
{
    t->unsent_first = t->out_n;
    t->unsent_off = t->out_len;
    if (!t->out_n)
        return;
    int sent = slirp_link_send(t->link_fd, t->link_kind, t->out, t->out_lens, t->out_n,
                               t->partial);
    if (sent < 0)
        sent = 0;
    size_t off = 0;
    for (int i = 0; i < sent; i++)
        off += t->out_lens[i];
    t->unsent_first = sent;
    t->unsent_off = off;
    if (t->partial)   /* Python sends these later, as frames with whole checksums */
        for (int i = sent; i < t->out_n; off += t->out_lens[i], i++)
            slirp_tcp_complete(t->out + off, t->out_lens[i]);
}

static void reset_out(struct fast_table *t)
{
    t->out_len = 0;
    t->out_n = 0;
    t->unsent_first = 0;
    t->unsent_off = 0;
    t->n_changed = 0;
}

static void changed(struct fast_table *t, struct fast_conn *c)
{
    if (t->n_changed < 2 * BATCH + 2)
        t->changed[t->n_changed++] = c->id;
}

static void eject(struct fast_table *t, struct fast_conn *c, int reason)
{
    fast_remove(t, c, reason);
    changed(t, c);
}

static int peer_closed(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static void set_want_read(struct fast_table *t, struct fast_conn *c, int want)
{
    if (want && !c->want_read)
        changed(t, c);          /* Python's reader waits for this */
    c->want_read = want;
}

/* Peeks what the guest's window (and the congestion window) allows, straight into data
 * segments, until the window is full, the socket has no more, or the out buffer is full. */
static void pump(struct fast_table *t, struct fast_conn *c, double now)
{
    c->kick = 0;
    for (;;) {
        uint64_t wnd = c->snd_wnd < c->cwnd ? c->snd_wnd : c->cwnd;
        if (c->snd_una + wnd <= c->snd_nxt) {
            set_want_read(t, c, 0);         /* full: the guest's ACKs bring us back */
            return;
        }
        uint64_t len = c->snd_una + wnd - c->snd_nxt;
        if (len > c->peek_max)
            len = c->peek_max;
        uint32_t mss = c->mss;
        size_t room = OUT_CAP - t->out_len;
        uint64_t nseg = (len + mss - 1) / mss;
        uint64_t most = (uint64_t)(OUT_FRAMES - t->out_n);
        if (most > PEEK_SEGS)
            most = PEEK_SEGS;
        if (nseg > most)
            nseg = most;
        while (nseg && nseg * (HDR + mss) > room)
            nseg--;
        if (!nseg) {
            c->kick = 1;                    /* the out buffer is full: next time */
            return;
        }
        if (len > nseg * mss)
            len = nseg * mss;
        struct iovec v[PEEK_SEGS];
        size_t pos = t->out_len;
        uint64_t left = len;
        for (uint64_t i = 0; i < nseg; i++) {
            uint32_t n = left < mss ? (uint32_t)left : mss;
            v[i].iov_base = t->out + pos + HDR;
            v[i].iov_len = n;
            pos += HDR + n;
            left -= n;
        }
        int off = (int)(c->snd_nxt - c->snd_una);
        if (setsockopt(c->fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) < 0) {
            eject(t, c, FAST_EJECT_ERROR);
            return;
        }
        struct msghdr m = {.msg_iov = v, .msg_iovlen = nseg};
        ssize_t got = recvmsg(c->fd, &m, MSG_PEEK | MSG_DONTWAIT);
        if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            eject(t, c, FAST_EJECT_ERROR);
            return;
        }
        if (got < 0)
            got = 0;
        /* the segments of what came */
        uint64_t done = 0;
        while (done < (uint64_t)got) {
            uint32_t n = (uint64_t)got - done < mss ? (uint32_t)((uint64_t)got - done) : mss;
            int last = done + n >= (uint64_t)got;
            fill_segment(t, c, t->out + t->out_len, c->snd_nxt, last ? 0x18 : 0x10, n);
            push_frame(t, HDR + n);
            c->snd_nxt += n;
            done += n;
        }
        if (got) {
            c->ack_due = 0;                 /* the data carries the ACK */
            if (c->snd_nxt > c->snd_max)
                c->snd_max = c->snd_nxt;
            if (c->rto_at == 0)
                c->rto_at = now + c->rto;
            c->last_activity = now;
        }
        if ((uint64_t)got < len) {
            /* nothing more now: EOF is tcp.py's to handle; else wait for more data
             * (readable once the socket holds more than what is in flight) */
            if (peer_closed(c->fd)) {
                eject(t, c, FAST_EJECT_EOF);
                return;
            }
            int lowat = (int)(c->snd_nxt - c->snd_una) + 1;
            if ((uint64_t)lowat > LOWAT_CAP
                || setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat) < 0)
                set_want_read(t, c, 0);     /* the ACKs will peek again */
            else
                set_want_read(t, c, 1);
            return;
        }
    }
}

/* ------------------------------------------------------------------ frames in */

static void touch(struct fast_table *t, struct fast_conn *c)
{
    if (!c->touched && t->n_touched < BATCH + 1) {
        c->touched = 1;
        t->touched[t->n_touched++] = c;
    }
}

/* Discards n acknowledged bytes from the socket. 0, or -1 on error. */
static int consume(struct fast_table *t, struct fast_conn *c, uint64_t n)
{
    while (n) {
        size_t want = n > sizeof t->discard ? sizeof t->discard : (size_t)n;
        ssize_t got = recv(c->fd, t->discard, want, MSG_TRUNC | MSG_DONTWAIT);
        if (got <= 0)
            return -1;
        n -= (uint64_t)got;
    }
    return 0;
}

/* A frame of a fast connection: 1 handled, 0 for Python (after an eject if needed). */
static int segment(struct fast_table *t, struct fast_conn *c, const uint8_t *tcp,
                   uint32_t plen, double now)
{
    uint8_t flags = tcp[13];
    uint32_t seq = get32(tcp + 4), ackw = get32(tcp + 8);
    const uint8_t *payload = tcp + 20;
    if ((flags & ~0x08) != 0x10 || seq != wire_ack(c)) {
        eject(t, c, FAST_EJECT_FRAME);      /* not plain, or not the next in order */
        return 0;
    }
    int32_t d = (int32_t)(ackw - wire_seq(c, c->snd_una));
    uint64_t wnd = (uint64_t)get16(tcp + 14) << c->guest_wscale;
    if (wnd > c->max_window)
        wnd = c->max_window;
    if (d > 0 && c->snd_una + (uint64_t)d > c->snd_max) {
        eject(t, c, FAST_EJECT_FRAME);      /* acknowledges what was never sent */
        return 0;
    }
    if (d >= 0 && wnd == 0) {
        eject(t, c, FAST_EJECT_FRAME);      /* a zero window: persist probes are tcp.py's */
        return 0;
    }
    if (d == 0 && plen == 0 && wnd == c->snd_wnd && c->snd_max > c->snd_una) {
        eject(t, c, FAST_EJECT_FRAME);      /* a duplicate ACK: loss recovery is tcp.py's */
        return 0;
    }
    c->last_guest = c->last_activity = now;
    touch(t, c);
    if (d > 0) {
        if (consume(t, c, (uint64_t)d) < 0) {
            eject(t, c, FAST_EJECT_ERROR);
            return 1;
        }
        uint64_t acked = (uint64_t)d;
        uint64_t grow = c->cwnd < c->ssthresh ? acked
                        : ((uint64_t)c->mss * acked / c->cwnd ? (uint64_t)c->mss * acked / c->cwnd : 1);
        c->cwnd = c->cwnd + grow > c->max_window ? c->max_window : c->cwnd + grow;
        c->snd_una += acked;
        if (c->snd_nxt < c->snd_una)
            c->snd_nxt = c->snd_una;
        c->rto = c->rto_initial;
        c->rto_at = c->snd_nxt > c->snd_una ? now + c->rto : 0;
        c->kick = 1;
    }
    if (d >= 0) {
        if (wnd > c->snd_wnd)
            c->kick = 1;
        c->snd_wnd = wnd;
    }
    if (plen) {
        ssize_t n = send(c->fd, payload, plen, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            eject(t, c, FAST_EJECT_ERROR);
            return 1;
        }
        if (n < 0)
            n = 0;
        c->rcv_nxt += (uint64_t)n;
        if ((uint32_t)n < plen) {
            /* the socket is full: the rest of the segment (it now overlaps what was taken)
             * and what follows go to tcp.py, whose shell buffers them until writable */
            eject(t, c, FAST_EJECT_FRAME);
            return 0;
        }
        c->ack_due = 1;
    }
    return 1;
}

/* 1 if the frame was handled here, 0 if it is Python's. */
static int frame(struct fast_table *t, const uint8_t *f, uint32_t len, double now)
{
    if (len < 14 + 40 || f[12] != 0x08 || f[13] != 0x00 || memcmp(f, t->router_mac, 6))
        return 0;
    const uint8_t *ip = f + 14;
    uint32_t tot = get16(ip + 2);
    if (ip[0] != 0x45 || ip[9] != 6 || (get16(ip + 6) & 0x3fff) || tot < 40 || tot > len - 14)
        return 0;
    const uint8_t *tcp = ip + 20;
    struct fast_conn *c = lookup(t, ip + 12, get16(tcp), ip + 16, get16(tcp + 2));
    if (!c)
        return 0;
    uint32_t tlen = tot - 20;
    uint32_t pseudo = get16(ip + 12) + get16(ip + 14) + get16(ip + 16) + get16(ip + 18) + 6 + tlen;
    if ((tcp[12] >> 4) != 5 || memcmp(f + 6, c->guest_mac, 6)
        || slirp_checksum(ip, 20, 0) != 0 || slirp_checksum(tcp, tlen, pseudo) != 0) {
        /* options, a new MAC, a bad checksum: tcp.py and the router decide (and count);
         * the connection goes with the frame, so its frames stay in order */
        eject(t, c, FAST_EJECT_FRAME);
        return 0;
    }
    return segment(t, c, tcp, tlen - 20, now);
}

static void end_batch(struct fast_table *t, double now)
{
    for (int i = 0; i < t->n_touched; i++) {
        struct fast_conn *c = t->touched[i];
        c->touched = 0;
        if (c->in_table && c->kick)
            pump(t, c, now);
        if (c->ack_due) {       /* also when it left: what was taken is acknowledged */
            c->ack_due = 0;
            send_ack(t, c);
        }
    }
    t->n_touched = 0;
    flush_out(t);
}

int fast_batch(struct fast_table *t, double now)
{
    reset_out(t);
    t->py_n = 0;
    int n = slirp_link_recv(t->link_fd, t->link_kind, t->in, FRAME_MAX, t->in_len, BATCH);
    if (n < 0)
        return -1;
    for (int i = 0; i < n; i++)
        if (!frame(t, t->in + (size_t)i * FRAME_MAX, t->in_len[i], now))
            t->py_idx[t->py_n++] = i;
    end_batch(t, now);
    return n;
}

void fast_pump(struct fast_table *t, struct fast_conn *c, double now)
{
    reset_out(t);
    if (c->in_table) {
        pump(t, c, now);
        if (c->in_table && c->ack_due) {
            c->ack_due = 0;
            send_ack(t, c);
        }
    }
    flush_out(t);
}

int fast_py_count(struct fast_table *t) { return t->py_n; }
const uint8_t *fast_py_frame(struct fast_table *t, int i) { return t->in + (size_t)t->py_idx[i] * FRAME_MAX; }
uint32_t fast_py_len(struct fast_table *t, int i) { return t->in_len[t->py_idx[i]]; }
int fast_changed_count(struct fast_table *t) { return t->n_changed; }
int fast_changed_id(struct fast_table *t, int i) { return t->changed[i]; }
int fast_unsent_count(struct fast_table *t) { return t->out_n - t->unsent_first; }

const uint8_t *fast_unsent(struct fast_table *t) { return t->out + t->unsent_off; }

uint32_t fast_unsent_len(struct fast_table *t, int i) { return t->out_lens[t->unsent_first + i]; }
