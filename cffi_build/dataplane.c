/*
 * dataplane.c — pyvde-switch's forwarding engine: every frame moves here, none in Python.
 *
 * Theory of operation
 * ===================
 * Threads and locking
 *   One data-plane thread (dp_thread) owns the frame path. It waits in epoll_wait()
 *   for readable endpoint sockets without holding any lock, then takes dp->lock for one
 *   *round*: it reads a batch (recvmmsg) from every ready endpoint, decides where each
 *   frame goes, and flushes every queued copy (sendmmsg per destination endpoint)
 *   before it releases the lock. The thread never calls into Python, so the GIL is
 *   never involved while frames move.
 *   Python (the trio control plane) calls the dp_* functions from its own thread.
 *   Each takes dp->lock, reads or changes state, and returns; so a control call waits
 *   at most one round, and the data-plane thread never sees a half-made change.
 *   epoll_ctl() is used under the lock from both sides. Events for an endpoint removed
 *   between epoll_wait() and the round are recognised by the generation number kept
 *   in the event data and ignored.
 *
 * Buffer ownership
 *   Received frames live in the frame pool (dp->pool, `pool_slots` slots of
 *   `slot_size` bytes), owned by the data-plane thread. A frame stays in its slot
 *   while transmit queues point at it (iovecs, no copies); the slot is reusable once
 *   those queues are flushed. Queues are flushed at the end of every round, when the
 *   pool is full, and when one endpoint's queue (TXCAP messages) is full, so after a
 *   round no iovec refers to the pool. 802.1Q tags are inserted or removed by iovec
 *   splicing: the 4 tag bytes come from the VLAN's own table entry, never the pool.
 *
 * File descriptors
 *   dp_add_endpoint() takes ownership of the data socket; dp_remove_endpoint() and
 *   dp_free() close it. Python unlinks the socket's file name; C never touches paths.
 *
 * Never: block on a send (sockets are non-blocking; a full receiver only loses its own
 * copy, counted in drop_tx), send a frame back to its ingress port, or keep a frame
 * that does not fit (a datagram larger than maxframe is dropped whole, not truncated).
 */
#define _GNU_SOURCE
#include "dataplane.h"
#include "clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define RXBATCH 64       /* frames read from one endpoint per recvmmsg */
#define TXCAP 64         /* messages queued per endpoint before an early flush */
#define MAXEVENTS 128
#define WAKE_ID UINT64_MAX
#define POOL_BYTES (8u << 20)
#define EVCAP 4096       /* queued control-plane events */
#define CAPBUF (1u << 20) /* capture bytes buffered within one round */

struct endpoint {
    int fd;                 /* -1: slot free */
    int port;
    int next;               /* next endpoint id on the same port, -1 */
    uint32_t gen;
    int dead;               /* hang-up or error seen: no longer polled or sent to */
    int dirty;              /* on the dirty list */
    unsigned txn;
    struct mmsghdr txmsg[TXCAP];
    struct iovec txiov[TXCAP * 3];
};

struct capture {
    int fd;
    int64_t good;           /* file offset after the last whole record written */
    uint8_t *buf[2];        /* CAPBUF bytes each */
    size_t len[2];
    int cur;                /* the buffer the data plane fills */
    int pending;            /* buf[!cur] is the writer's until it clears this */
    int failed, err;        /* set by the writer: a write failed with err */
    struct capture *next;   /* every capture, for the writer */
};

struct port {
    int first_ep;           /* -1: inactive */
    int nep;
    uint16_t untagged;      /* DP_NOVLAN: none */
    int mirror;             /* port that gets copies of this port's traffic, -1 */
    int mirror_refs;        /* > 0: a mirror destination, out of normal forwarding */
    struct capture *cap;
    struct dp_capture_info capinfo;
    struct dp_port_stats st;
};

struct vlan {
    int exists;
    uint8_t tag[4];         /* 81 00 + VID, for insertion */
    uint64_t *tagged;       /* bitmap over port slots */
    int nflood;             /* active member ports (tagged or untagged) */
    int *flood;
    struct dp_vlan_stats st;
};

struct dp {
    pthread_mutex_t lock;
    pthread_t thread;
    int running;
    volatile int stop;
    int epfd, wakefd;

    int nslots;
    int words;              /* bitmap words per VLAN */
    struct port *ports;
    int hub;
    int maxframe;
    int nactive;
    int *active;            /* active ports, for hub mode */

    struct endpoint **eps;  /* by id */
    int neps;
    int *dirty;
    int ndirty;

    struct vlan vlans[DP_NVLANS];

    struct mac_table *table;
    int64_t gcint_ms, next_gc;
    int manual_clock;
    int64_t manual_now;

    uint8_t *pool;
    unsigned slot_size, pool_slots, pool_used;
    struct mmsghdr rxmsg[RXBATCH];
    struct iovec rxiov[RXBATCH];

    struct dp_stats st;

    int evfd;               /* eventfd: readable while events are queued */
    int hash_events;
    unsigned ev_head, ev_len;
    struct dp_event ev[EVCAP];

    int ncaptures;
    struct timespec round_ts;   /* CLOCK_REALTIME at the start of the round: pcap time */
    pthread_mutex_t cap_lock;
    pthread_cond_t cap_work, cap_done;
    struct capture *caps;
    pthread_t cap_thread;
    int cap_running, cap_stop;
};

/* ------------------------------------------------------------------ helpers */

static int64_t now_ms(struct dp *dp)
{
    return dp->manual_clock ? dp->manual_now : monotonic_ms();
}

static int valid_port(struct dp *dp, int port) { return port >= 0 && port < dp->nslots; }
static int valid_vlan(int vlan) { return vlan >= 0 && vlan < DP_NOVLAN; }

static int bit(const uint64_t *bm, int i) { return bm && (bm[i >> 6] >> (i & 63)) & 1; }

static int is_member(struct dp *dp, int vlan, int port)
{
    return dp->ports[port].untagged == vlan || bit(dp->vlans[vlan].tagged, port);
}

static struct endpoint *ep_by_id(struct dp *dp, int id)
{
    if (id < 0 || id >= dp->neps || !dp->eps[id] || dp->eps[id]->fd < 0)
        return NULL;
    return dp->eps[id];
}

/* ------------------------------------------------------------------ events */

static void push_event(struct dp *dp, int kind, int port, int err, const uint8_t *mac, int vlan)
{
    if (dp->ev_len == EVCAP) {
        dp->st.events_lost++;
        return;
    }
    struct dp_event *e = &dp->ev[(dp->ev_head + dp->ev_len++) % EVCAP];
    e->kind = kind;
    e->port = port;
    e->err = err;
    e->vlan = (uint16_t)vlan;
    if (mac)
        memcpy(e->mac, mac, 6);
    else
        memset(e->mac, 0, 6);
    if (dp->ev_len == 1) {
        uint64_t one = 1;
        if (write(dp->evfd, &one, sizeof one) < 0) { /* counter full: already readable */ }
    }
}

static void table_removed(void *ctx, const uint8_t *mac, uint16_t vlan, int32_t port)
{
    struct dp *dp = ctx;
    if (dp->hash_events)
        push_event(dp, DP_EV_HASH_DEL, port, 0, mac, vlan);
}

/* Recomputes the flood list of one VLAN: its active member ports. */
static void rebuild_vlan(struct dp *dp, int v)
{
    struct vlan *vl = &dp->vlans[v];
    vl->nflood = 0;
    if (!vl->exists)
        return;
    for (int p = 0; p < dp->nslots; p++)
        if (dp->ports[p].nep > 0 && dp->ports[p].mirror_refs == 0 && is_member(dp, v, p))
            vl->flood[vl->nflood++] = p;
}

/* Recomputes everything derived from port activity or membership of one port. */
static void port_changed(struct dp *dp, int port)
{
    dp->nactive = 0;
    for (int p = 0; p < dp->nslots; p++)
        if (dp->ports[p].nep > 0)
            dp->active[dp->nactive++] = p;
    for (int v = 0; v < DP_NOVLAN; v++)
        if (dp->vlans[v].exists && (port < 0 || is_member(dp, v, port)))
            rebuild_vlan(dp, v);
}

/* ----------------------------------------------------------------- capture */
/*
 * Each capture has two buffers. The data-plane thread appends records to buf[cur]
 * (no lock: only it touches that buffer) and, at the end of a round, hands it to the
 * capture writer thread, which pwrite()s it while the other buffer fills. A disk slower
 * than the port therefore costs captured frames (counted in `dropped`), never
 * forwarding speed. pending/failed/err/good and the writer's list are guarded by
 * cap_lock, which is never held while dp->lock is being waited for.
 */

static void *capture_writer(void *arg);
static size_t whole_records(const uint8_t *buf, size_t n);

/* Hands the filled buffer to the writer if it is free; a failed capture is reported
 * and closed. Returns 1 if buf[cur] is empty afterwards. */
static int capture_handoff(struct dp *dp, int port);

static void capture_unlink(struct dp *dp, struct capture *c)
{
    for (struct capture **link = &dp->caps; *link; link = &(*link)->next)
        if (*link == c) {
            *link = c->next;
            break;
        }
}

/* Stops a capture: waits for the writer, then (if write is set and nothing failed)
 * writes what is still buffered, and closes the file. */
static int capture_close(struct dp *dp, int port, int write)
{
    struct capture *c = dp->ports[port].cap;
    pthread_mutex_lock(&dp->cap_lock);
    while (c->pending)
        pthread_cond_wait(&dp->cap_done, &dp->cap_lock);
    capture_unlink(dp, c);
    pthread_mutex_unlock(&dp->cap_lock);
    int err = c->failed ? c->err : 0;
    if (err)
        dp->ports[port].capinfo.err = err;
    size_t done = 0, len = c->len[c->cur];
    while (write && !c->failed && done < len) {
        ssize_t r = pwrite(c->fd, c->buf[c->cur] + done, len - done, c->good + (int64_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            err = r < 0 ? errno : ENOSPC;
            size_t whole = whole_records(c->buf[c->cur], done);
            if (ftruncate(c->fd, c->good + (int64_t)whole) < 0) { /* a cut record stays */ }
            dp->ports[port].capinfo.err = err;
            break;
        }
        done += (size_t)r;
    }
    close(c->fd);
    free(c->buf[0]);
    free(c->buf[1]);
    free(c);
    dp->ports[port].cap = NULL;
    dp->ports[port].capinfo.active = 0;
    dp->ncaptures--;
    return err;
}

static int capture_handoff(struct dp *dp, int port)
{
    struct capture *c = dp->ports[port].cap;
    int empty = 0;
    pthread_mutex_lock(&dp->cap_lock);
    int failed = c->failed;
    if (!failed && !c->pending && c->len[c->cur]) {
        c->pending = 1;
        c->cur ^= 1;
        c->len[c->cur] = 0;
        pthread_cond_signal(&dp->cap_work);
    }
    empty = c->len[c->cur] == 0;
    pthread_mutex_unlock(&dp->cap_lock);
    if (failed) {
        dp->ports[port].capinfo.err = c->err;
        push_event(dp, DP_EV_CAPTURE_ERROR, port, c->err, NULL, 0);
        capture_close(dp, port, 0);
        return 0;
    }
    return empty;
}

static void flush_captures(struct dp *dp)
{
    for (int p = 0; p < dp->nslots && dp->ncaptures; p++)
        if (dp->ports[p].cap)
            capture_handoff(dp, p);
}

/* The length of the longest run of whole pcap records at the start of buf[0..n). */
static size_t whole_records(const uint8_t *buf, size_t n)
{
    size_t at = 0;
    while (at + 16 <= n) {
        uint32_t incl;
        memcpy(&incl, buf + at + 8, 4);
        if (at + 16 + incl > n)
            break;
        at += 16 + incl;
    }
    return at;
}

static void *capture_writer(void *arg)
{
    struct dp *dp = arg;
    pthread_mutex_lock(&dp->cap_lock);
    for (;;) {
        struct capture *c = dp->caps;
        while (c && !c->pending)
            c = c->next;
        if (!c) {
            if (dp->cap_stop)
                break;
            pthread_cond_wait(&dp->cap_work, &dp->cap_lock);
            continue;
        }
        int idx = !c->cur;
        size_t len = c->len[idx], done = 0;
        int64_t at = c->good;
        int err = 0;
        pthread_mutex_unlock(&dp->cap_lock);
        while (done < len) {
            ssize_t r = pwrite(c->fd, c->buf[idx] + done, len - done, at + (int64_t)done);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                err = r < 0 ? errno : ENOSPC;
                break;
            }
            done += (size_t)r;
        }
        size_t whole = len;
        if (err) {   /* keep every whole record that reached the file, cut the rest */
            whole = whole_records(c->buf[idx], done);
            if (ftruncate(c->fd, at + (int64_t)whole) < 0) { /* a reader may see a cut record */ }
        }
        pthread_mutex_lock(&dp->cap_lock);
        if (err) {
            c->failed = 1;
            c->err = err;
            c->good = at + (int64_t)whole;
            uint64_t one = 1;   /* wake the data plane so it reports the failure now */
            if (write(dp->wakefd, &one, sizeof one) < 0) { /* it wakes within 1 s anyway */ }
        } else {
            c->good = at + (int64_t)len;
        }
        c->pending = 0;
        pthread_cond_broadcast(&dp->cap_done);
    }
    pthread_mutex_unlock(&dp->cap_lock);
    return NULL;
}

static void put32(uint8_t *b, uint32_t v) { memcpy(b, &v, 4); }   /* pcap: host order */

/* Appends one pcap record: the frame as it crosses the port (pieces: up to 3 iovecs). */
static void capture_record(struct dp *dp, int port, const struct iovec *iov, int niov)
{
    struct capture *c = dp->ports[port].cap;
    size_t len = 0;
    for (int i = 0; i < niov; i++)
        len += iov[i].iov_len;
    if (c->len[c->cur] + 16 + len > CAPBUF && !capture_handoff(dp, port)) {
        if (dp->ports[port].cap)
            dp->ports[port].capinfo.dropped++;   /* the writer is behind: lose the record */
        return;
    }
    uint8_t *b = c->buf[c->cur] + c->len[c->cur];
    put32(b, (uint32_t)dp->round_ts.tv_sec);
    put32(b + 4, (uint32_t)(dp->round_ts.tv_nsec / 1000));
    put32(b + 8, (uint32_t)len);
    put32(b + 12, (uint32_t)len);
    b += 16;
    for (int i = 0; i < niov; i++) {
        memcpy(b, iov[i].iov_base, iov[i].iov_len);
        b += iov[i].iov_len;
    }
    c->len[c->cur] += 16 + len;
    dp->ports[port].capinfo.frames++;
    dp->ports[port].capinfo.bytes += len;
}

/* ------------------------------------------------------------- transmit side */

static void flush_ep(struct dp *dp, struct endpoint *ep)
{
    unsigned i = 0;
    struct dp_port_stats *st = &dp->ports[ep->port].st;
    while (i < ep->txn) {
        int r = sendmmsg(ep->fd, ep->txmsg + i, ep->txn - i, MSG_DONTWAIT | MSG_NOSIGNAL);
        dp->st.tx_calls++;
        if (r > 0) {
            for (int k = 0; k < r; k++) {
                st->out_frames++;
                st->out_bytes += ep->txmsg[i + k].msg_len;
            }
            dp->st.tx_frames += r;
            i += r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EMSGSIZE) {   /* this one frame cannot go: skip it */
            st->drop_tx++;
            i++;
            continue;
        }
        /* EAGAIN (receiver's buffer full), ECONNREFUSED (receiver gone)...: drop the rest. */
        st->drop_tx += ep->txn - i;
        break;
    }
    ep->txn = 0;
}

static void flush_all(struct dp *dp)
{
    for (int k = 0; k < dp->ndirty; k++) {
        struct endpoint *ep = dp->eps[dp->dirty[k]];
        ep->dirty = 0;
        if (ep->txn)
            flush_ep(dp, ep);
    }
    dp->ndirty = 0;
    dp->pool_used = 0;
}

/* How a frame leaves towards one port. */
enum form { AS_IS, ADD_TAG, STRIP_TAG };

/* Fills iov (3 entries) with the frame in the given form; returns how many are used. */
static int frame_iov(struct iovec *iov, uint8_t *frame, unsigned len, enum form form,
                     const uint8_t *tag)
{
    switch (form) {
    case ADD_TAG:
        iov[0].iov_base = frame;
        iov[0].iov_len = 12;
        iov[1].iov_base = (void *)tag;
        iov[1].iov_len = 4;
        iov[2].iov_base = frame + 12;
        iov[2].iov_len = len - 12;
        return 3;
    case STRIP_TAG:
        iov[0].iov_base = frame;
        iov[0].iov_len = 12;
        iov[1].iov_base = frame + 16;
        iov[1].iov_len = len - 16;
        return 2;
    default:
        iov[0].iov_base = frame;
        iov[0].iov_len = len;
        return 1;
    }
}

static void queue_ep(struct dp *dp, int id, struct endpoint *ep, uint8_t *frame, unsigned len,
                     enum form form, const uint8_t *tag)
{
    if (ep->dead)
        return;
    if (ep->txn == TXCAP)
        flush_ep(dp, ep);
    struct iovec *iov = &ep->txiov[ep->txn * 3];
    struct msghdr *h = &ep->txmsg[ep->txn].msg_hdr;
    memset(h, 0, sizeof *h);
    h->msg_iov = iov;
    h->msg_iovlen = frame_iov(iov, frame, len, form, tag);
    ep->txn++;
    if (!ep->dirty) {
        ep->dirty = 1;
        dp->dirty[dp->ndirty++] = id;
    }
}

/* The frame leaves through one port: to each of its endpoints, and to its capture. */
static void queue_port_only(struct dp *dp, int port, uint8_t *frame, unsigned len,
                            enum form form, const uint8_t *tag)
{
    for (int id = dp->ports[port].first_ep; id >= 0; id = dp->eps[id]->next)
        queue_ep(dp, id, dp->eps[id], frame, len, form, tag);
    if (dp->ports[port].cap) {
        struct iovec iov[3];
        capture_record(dp, port, iov, frame_iov(iov, frame, len, form, tag));
    }
}

/* ... and a copy to the port's mirror, unless that is where the frame came from. */
static void queue_port(struct dp *dp, int in, int port, uint8_t *frame, unsigned len,
                       enum form form, const uint8_t *tag)
{
    queue_port_only(dp, port, frame, len, form, tag);
    int m = dp->ports[port].mirror;
    if (m >= 0 && m != in)
        queue_port_only(dp, m, frame, len, form, tag);
}

/* Sends a frame of VLAN v (tagged on arrival or not) to port q in the form q needs. */
static void queue_vlan_port(struct dp *dp, int p, int q, int v, int tagged_in, uint8_t *frame,
                            unsigned len)
{
    int untagged_out = dp->ports[q].untagged == v;
    enum form form = untagged_out ? (tagged_in ? STRIP_TAG : AS_IS)
                                  : (tagged_in ? AS_IS : ADD_TAG);
    queue_port(dp, p, q, frame, len, form, dp->vlans[v].tag);
}

/* -------------------------------------------------------------- forwarding */

static void forward(struct dp *dp, int p, uint8_t *frame, unsigned len, int64_t now)
{
    struct port *in = &dp->ports[p];
    in->st.in_frames++;
    in->st.in_bytes += len;
    if (in->mirror_refs) {   /* a mirror destination only listens, like a SPAN port */
        in->st.drop_mirror++;
        return;
    }
    if (in->cap) {
        struct iovec iov = {frame, len};
        capture_record(dp, p, &iov, 1);
    }
    if (in->mirror >= 0)
        queue_port_only(dp, in->mirror, frame, len, AS_IS, NULL);

    if (dp->hub) {
        for (int k = 0; k < dp->nactive; k++) {
            int q = dp->active[k];
            if (q != p && dp->ports[q].mirror_refs == 0)
                queue_port(dp, p, q, frame, len, AS_IS, NULL);
        }
        return;
    }

    int v, tagged_in = frame[12] == 0x81 && frame[13] == 0x00;
    if (tagged_in) {
        if (len < 18) {
            in->st.drop_runt++;
            return;
        }
        v = ((frame[14] << 8) | frame[15]) & 0xfff;
        if (v == DP_NOVLAN || !dp->vlans[v].exists || !is_member(dp, v, p)) {
            in->st.drop_vlan++;
            return;
        }
    } else {
        v = in->untagged;
        if (v == DP_NOVLAN) {
            in->st.drop_vlan++;
            return;
        }
    }
    struct vlan *vl = &dp->vlans[v];
    vl->st.in_frames++;
    vl->st.in_bytes += len;

    const uint8_t *dst = frame, *src = frame + 6;
    if (!(src[0] & 1)) {
        switch (mt_learn(dp->table, src, (uint16_t)v, p, now)) {
        case MT_FULL: dp->st.learn_full++; break;
        case MT_MOVED:
            dp->st.mac_moved++;
            if (dp->hash_events)
                push_event(dp, DP_EV_HASH_ADD, p, 0, src, v);
            break;
        case MT_NEW:
            if (dp->hash_events)
                push_event(dp, DP_EV_HASH_ADD, p, 0, src, v);
            break;
        case MT_KEPT: dp->st.mac_kept++; break;
        }
    }
    if (!(dst[0] & 1)) {
        int q = mt_lookup(dp->table, dst, (uint16_t)v, now);
        if (q == p)
            return;   /* the destination sits behind the ingress port */
        if (q >= 0 && q < dp->nslots && dp->ports[q].nep > 0 && dp->ports[q].mirror_refs == 0 &&
            is_member(dp, v, q)) {
            queue_vlan_port(dp, p, q, v, tagged_in, frame, len);
            return;
        }
    }
    for (int k = 0; k < vl->nflood; k++)
        if (vl->flood[k] != p)
            queue_vlan_port(dp, p, vl->flood[k], v, tagged_in, frame, len);
}

/* Reads one batch from an endpoint and forwards it. */
static void receive(struct dp *dp, struct endpoint *ep, int64_t now)
{
    if (dp->pool_used + RXBATCH > dp->pool_slots)
        flush_all(dp);
    for (unsigned i = 0; i < RXBATCH; i++)
        dp->rxiov[i].iov_base = dp->pool + (size_t)(dp->pool_used + i) * dp->slot_size;
    int n = recvmmsg(ep->fd, dp->rxmsg, RXBATCH, MSG_DONTWAIT, NULL);
    if (n <= 0)
        return;   /* EAGAIN, or a pending socket error that the read has now cleared */
    dp->st.rx_calls++;
    dp->st.rx_frames += n;
    struct port *in = &dp->ports[ep->port];
    for (int i = 0; i < n; i++) {
        unsigned len = dp->rxmsg[i].msg_len;
        if (dp->rxmsg[i].msg_hdr.msg_flags & MSG_TRUNC) {
            in->st.drop_oversize++;
            continue;
        }
        if (len < DP_MIN_FRAME) {
            if (len > 0)
                in->st.drop_runt++;   /* zero-length datagrams are vde_close()'s goodbye */
            continue;
        }
        forward(dp, ep->port, dp->rxiov[i].iov_base, len, now);
    }
    dp->pool_used += n;
}

static void mark_dead(struct dp *dp, struct endpoint *ep)
{
    if (ep->dead)
        return;
    ep->dead = 1;
    dp->st.endpoints_dead++;
    epoll_ctl(dp->epfd, EPOLL_CTL_DEL, ep->fd, NULL);
}

static void *dp_thread(void *arg)
{
    struct dp *dp = arg;
    struct epoll_event ev[MAXEVENTS];
    while (!dp->stop) {
        int n = epoll_wait(dp->epfd, ev, MAXEVENTS, 1000);
        pthread_mutex_lock(&dp->lock);
        int64_t now = now_ms(dp);
        if (n > 0)
            dp->st.rounds++;
        if (dp->ncaptures)
            clock_gettime(CLOCK_REALTIME, &dp->round_ts);
        for (int i = 0; i < n; i++) {
            uint64_t d = ev[i].data.u64;
            if (d == WAKE_ID) {
                uint64_t junk;
                if (read(dp->wakefd, &junk, sizeof junk) < 0) { /* nothing to do */ }
                continue;
            }
            struct endpoint *ep = ep_by_id(dp, (int)(d & 0xffffffff));
            if (!ep || ep->gen != (uint32_t)(d >> 32) || ep->dead)
                continue;   /* removed since epoll_wait returned */
            if (ev[i].events & EPOLLIN)
                receive(dp, ep, now);
            if (ev[i].events & (EPOLLHUP | EPOLLERR)) {
                int err = 0;
                socklen_t sl = sizeof err;
                getsockopt(ep->fd, SOL_SOCKET, SO_ERROR, &err, &sl);   /* clears it */
                if (ev[i].events & EPOLLHUP)
                    mark_dead(dp, ep);
            }
        }
        flush_all(dp);
        if (dp->ncaptures)
            flush_captures(dp);
        if (!dp->manual_clock && now >= dp->next_gc) {
            mt_expire(dp->table, now);
            dp->next_gc = now + dp->gcint_ms;
        }
        pthread_mutex_unlock(&dp->lock);
    }
    return NULL;
}

/* ------------------------------------------------------------ lifecycle API */

static int set_vlan_words(struct dp *dp, int nslots)
{
    int words = (nslots + 63) / 64;
    for (int v = 0; v < DP_NVLANS; v++) {
        struct vlan *vl = &dp->vlans[v];
        if (!vl->exists)
            continue;
        uint64_t *bm = realloc(vl->tagged, sizeof(uint64_t) * words);
        int *fl = realloc(vl->flood, sizeof(int) * nslots);
        if (bm)
            vl->tagged = bm;
        if (fl)
            vl->flood = fl;
        if (!bm || !fl)
            return -ENOMEM;
        for (int w = dp->words; w < words; w++)
            bm[w] = 0;
        if (words < dp->words || nslots < dp->nslots)
            for (int p = nslots; p < words * 64; p++)
                bm[p >> 6] &= ~(1ULL << (p & 63));
    }
    dp->words = words;
    return 0;
}

static int vlan_alloc(struct dp *dp, int v)
{
    struct vlan *vl = &dp->vlans[v];
    vl->tagged = calloc(dp->words ? dp->words : 1, sizeof(uint64_t));
    vl->flood = calloc(dp->nslots ? dp->nslots : 1, sizeof(int));
    if (!vl->tagged || !vl->flood) {
        free(vl->tagged);
        free(vl->flood);
        vl->tagged = NULL;
        vl->flood = NULL;
        return -ENOMEM;
    }
    vl->exists = 1;
    vl->nflood = 0;
    vl->tag[0] = 0x81;
    vl->tag[1] = 0x00;
    vl->tag[2] = (uint8_t)(v >> 8);
    vl->tag[3] = (uint8_t)v;
    memset(&vl->st, 0, sizeof vl->st);
    return 0;
}

dp_t *dp_new(int nslots, int maxframe, uint32_t hashsize)
{
    if (nslots < 1 || maxframe < DP_MIN_FRAME || maxframe > DP_MAX_FRAME)
        return NULL;
    struct dp *dp = calloc(1, sizeof *dp);
    if (!dp)
        return NULL;
    pthread_mutex_init(&dp->lock, NULL);
    pthread_mutex_init(&dp->cap_lock, NULL);
    pthread_cond_init(&dp->cap_work, NULL);
    pthread_cond_init(&dp->cap_done, NULL);
    dp->epfd = epoll_create1(EPOLL_CLOEXEC);
    dp->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    dp->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    dp->nslots = nslots;
    dp->words = (nslots + 63) / 64;
    dp->ports = calloc(nslots, sizeof *dp->ports);
    dp->active = calloc(nslots, sizeof *dp->active);
    dp->maxframe = maxframe;
    dp->slot_size = (maxframe + 4 + 63) & ~63u;
    dp->pool_slots = POOL_BYTES / dp->slot_size;
    if (dp->pool_slots < 2 * RXBATCH)
        dp->pool_slots = 2 * RXBATCH;
    if (dp->pool_slots > 1024)
        dp->pool_slots = 1024;
    dp->pool = malloc((size_t)dp->pool_slots * dp->slot_size);
    dp->table = mt_new(hashsize, mt_capacity_for(hashsize));
    dp->gcint_ms = 2000;
    if (dp->epfd < 0 || dp->wakefd < 0 || dp->evfd < 0 || !dp->ports || !dp->active || !dp->pool || !dp->table ||
        vlan_alloc(dp, 0) < 0) {
        dp_free(dp);
        return NULL;
    }
    mt_set_observer(dp->table, table_removed, dp);
    for (int p = 0; p < nslots; p++) {
        dp->ports[p].first_ep = -1;
        dp->ports[p].mirror = -1;
    }
    for (int i = 0; i < RXBATCH; i++) {   /* only iov_base changes per read */
        dp->rxiov[i].iov_len = maxframe;
        dp->rxmsg[i].msg_hdr.msg_iov = &dp->rxiov[i];
        dp->rxmsg[i].msg_hdr.msg_iovlen = 1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_ID};
    epoll_ctl(dp->epfd, EPOLL_CTL_ADD, dp->wakefd, &ev);
    return dp;
}

int dp_start(dp_t *dp)
{
    if (dp->running)
        return -EALREADY;
    dp->stop = 0;
    if (!dp->cap_running) {   /* started here, not before: the switch may fork to daemonize */
        int r = pthread_create(&dp->cap_thread, NULL, capture_writer, dp);
        if (r)
            return -r;
        dp->cap_running = 1;
    }
    int r = pthread_create(&dp->thread, NULL, dp_thread, dp);
    if (r)
        return -r;
    dp->running = 1;
    return 0;
}

void dp_stop(dp_t *dp)
{
    if (!dp->running)
        return;
    dp->stop = 1;
    uint64_t one = 1;
    if (write(dp->wakefd, &one, sizeof one) < 0) { /* the 1 s epoll timeout still ends it */ }
    pthread_join(dp->thread, NULL);
    dp->running = 0;
}

void dp_free(dp_t *dp)
{
    if (!dp)
        return;
    dp_stop(dp);
    for (int p = 0; dp->ports && p < dp->nslots; p++)
        if (dp->ports[p].cap)
            capture_close(dp, p, 1);
    if (dp->cap_running) {
        pthread_mutex_lock(&dp->cap_lock);
        dp->cap_stop = 1;
        pthread_cond_signal(&dp->cap_work);
        pthread_mutex_unlock(&dp->cap_lock);
        pthread_join(dp->cap_thread, NULL);
    }
    for (int i = 0; i < dp->neps; i++) {
        if (dp->eps[i] && dp->eps[i]->fd >= 0)
            close(dp->eps[i]->fd);
        free(dp->eps[i]);
    }
    for (int v = 0; v < DP_NVLANS; v++) {
        free(dp->vlans[v].tagged);
        free(dp->vlans[v].flood);
    }
    free(dp->eps);
    free(dp->dirty);
    free(dp->ports);
    free(dp->active);
    free(dp->pool);
    mt_free(dp->table);
    if (dp->epfd >= 0)
        close(dp->epfd);
    if (dp->wakefd >= 0)
        close(dp->wakefd);
    if (dp->evfd > 0)
        close(dp->evfd);
    pthread_mutex_destroy(&dp->lock);
    pthread_mutex_destroy(&dp->cap_lock);
    pthread_cond_destroy(&dp->cap_work);
    pthread_cond_destroy(&dp->cap_done);
    free(dp);
}

/* ------------------------------------------------------------ endpoints API */

int dp_add_endpoint(dp_t *dp, int port, int fd)
{
    int r;
    pthread_mutex_lock(&dp->lock);
    if (!valid_port(dp, port) || fd < 0) {
        r = -EINVAL;
        goto out;
    }
    int id = 0;
    while (id < dp->neps && dp->eps[id] && dp->eps[id]->fd >= 0)
        id++;
    if (id == dp->neps) {
        int n = dp->neps ? dp->neps * 2 : 16;
        struct endpoint **eps = realloc(dp->eps, sizeof *eps * n);
        if (!eps) {
            r = -ENOMEM;
            goto out;
        }
        dp->eps = eps;
        int *dirty = realloc(dp->dirty, sizeof *dirty * n);
        if (!dirty) {
            r = -ENOMEM;
            goto out;
        }
        dp->dirty = dirty;
        for (int i = dp->neps; i < n; i++)
            dp->eps[i] = NULL;
        dp->neps = n;
    }
    if (!dp->eps[id]) {
        dp->eps[id] = calloc(1, sizeof(struct endpoint));
        if (!dp->eps[id]) {
            r = -ENOMEM;
            goto out;
        }
        dp->eps[id]->fd = -1;
    }
    struct endpoint *ep = dp->eps[id];
    uint32_t gen = ep->gen + 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((uint64_t)gen << 32) | (uint32_t)id};
    if (epoll_ctl(dp->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        r = -errno;
        goto out;
    }
    ep->fd = fd;
    ep->gen = gen;
    ep->port = port;
    ep->dead = 0;
    ep->dirty = 0;
    ep->txn = 0;
    ep->next = dp->ports[port].first_ep;   /* newest first, as port/print lists them */
    dp->ports[port].first_ep = id;
    if (dp->ports[port].nep++ == 0)
        port_changed(dp, port);
    r = id;
out:
    pthread_mutex_unlock(&dp->lock);
    return r;
}

int dp_remove_endpoint(dp_t *dp, int id)
{
    pthread_mutex_lock(&dp->lock);
    struct endpoint *ep = ep_by_id(dp, id);
    if (!ep) {
        pthread_mutex_unlock(&dp->lock);
        return -ENOENT;
    }
    if (!ep->dead)
        epoll_ctl(dp->epfd, EPOLL_CTL_DEL, ep->fd, NULL);
    close(ep->fd);
    ep->fd = -1;
    ep->gen++;
    struct port *pt = &dp->ports[ep->port];
    for (int *link = &pt->first_ep; *link >= 0; link = &dp->eps[*link]->next) {
        if (*link == id) {
            *link = ep->next;
            break;
        }
    }
    if (--pt->nep == 0) {
        mt_flush_port(dp->table, ep->port);
        port_changed(dp, ep->port);
    }
    pthread_mutex_unlock(&dp->lock);
    return 0;
}

int dp_endpoint_alive(dp_t *dp, int id)
{
    pthread_mutex_lock(&dp->lock);
    struct endpoint *ep = ep_by_id(dp, id);
    int r = ep ? !ep->dead : -ENOENT;
    pthread_mutex_unlock(&dp->lock);
    return r;
}

/* --------------------------------------------------------------- ports API */

int dp_set_nslots(dp_t *dp, int nslots)
{
    int r = 0;
    pthread_mutex_lock(&dp->lock);
    if (nslots < 1) {
        r = -EINVAL;
        goto out;
    }
    for (int p = nslots; p < dp->nslots; p++) {
        if (dp->ports[p].nep > 0) {
            r = -EBUSY;
            goto out;
        }
    }
    /* Ports that vanish, while their memory is still there: captures, mirrors, MACs. */
    for (int p = nslots; p < dp->nslots; p++) {
        if (dp->ports[p].cap)
            capture_close(dp, p, 1);
        int m = dp->ports[p].mirror;
        if (m >= 0 && m < nslots)
            dp->ports[m].mirror_refs--;
        dp->ports[p].mirror = -1;
        mt_flush_port(dp->table, p);
    }
    for (int p = 0; p < nslots && p < dp->nslots; p++) {
        if (dp->ports[p].mirror >= nslots)
            dp->ports[p].mirror = -1;
    }
    struct port *ports = realloc(dp->ports, sizeof *ports * nslots);
    if (!ports) {
        r = -ENOMEM;
        goto out;
    }
    dp->ports = ports;
    int *active = realloc(dp->active, sizeof *active * nslots);
    if (!active) {
        r = -ENOMEM;
        goto out;
    }
    dp->active = active;
    for (int p = dp->nslots; p < nslots; p++) {
        memset(&ports[p], 0, sizeof ports[p]);
        ports[p].first_ep = -1;
        ports[p].mirror = -1;
    }
    if ((r = set_vlan_words(dp, nslots)) < 0)
        goto out;
    dp->nslots = nslots;
    port_changed(dp, -1);
out:
    pthread_mutex_unlock(&dp->lock);
    return r;
}

int dp_get_nslots(dp_t *dp) { return dp->nslots; }
int dp_get_maxframe(dp_t *dp) { return dp->maxframe; }

void dp_set_hub(dp_t *dp, int on)
{
    pthread_mutex_lock(&dp->lock);
    dp->hub = !!on;
    mt_flush(dp->table);
    pthread_mutex_unlock(&dp->lock);
}

int dp_get_hub(dp_t *dp) { return dp->hub; }

int dp_port_stats(dp_t *dp, int port, struct dp_port_stats *out)
{
    pthread_mutex_lock(&dp->lock);
    int r = valid_port(dp, port) ? 0 : -EINVAL;
    if (!r)
        *out = dp->ports[port].st;
    pthread_mutex_unlock(&dp->lock);
    return r;
}

int dp_port_active(dp_t *dp, int port)
{
    pthread_mutex_lock(&dp->lock);
    int r = valid_port(dp, port) ? dp->ports[port].nep > 0 : -EINVAL;
    pthread_mutex_unlock(&dp->lock);
    return r;
}

void dp_reset_stats(dp_t *dp, int port)
{
    pthread_mutex_lock(&dp->lock);
    for (int p = 0; p < dp->nslots; p++)
        if (port < 0 || p == port)
            memset(&dp->ports[p].st, 0, sizeof dp->ports[p].st);
    pthread_mutex_unlock(&dp->lock);
}

void dp_get_stats(dp_t *dp, struct dp_stats *out)
{
    pthread_mutex_lock(&dp->lock);
    *out = dp->st;
    pthread_mutex_unlock(&dp->lock);
}

/* ----------------------------------------------------------- MAC table API */

void dp_table_config(dp_t *dp, int64_t expire_ms, int64_t minpers_ms, int64_t gcint_ms)
{
    pthread_mutex_lock(&dp->lock);
    mt_set_times(dp->table, expire_ms, minpers_ms);
    dp->gcint_ms = gcint_ms > 0 ? gcint_ms : 1;
    dp->next_gc = 0;
    pthread_mutex_unlock(&dp->lock);
}

int dp_table_resize(dp_t *dp, uint32_t buckets)
{
    pthread_mutex_lock(&dp->lock);
    int r = mt_resize(dp->table, buckets) < 0 ? -ENOMEM : 0;
    pthread_mutex_unlock(&dp->lock);
    return r;
}

uint32_t dp_table_buckets(dp_t *dp) { return mt_buckets(dp->table); }

uint32_t dp_table_count(dp_t *dp)
{
    pthread_mutex_lock(&dp->lock);
    uint32_t n = mt_count(dp->table);
    pthread_mutex_unlock(&dp->lock);
    return n;
}

int dp_table_dump(dp_t *dp, struct mt_entry *out, uint32_t max)
{
    pthread_mutex_lock(&dp->lock);
    int n = (int)mt_dump(dp->table, out, max, now_ms(dp));
    pthread_mutex_unlock(&dp->lock);
    return n;
}

int dp_table_find(dp_t *dp, const uint8_t *mac, int vlan, struct mt_entry *out)
{
    pthread_mutex_lock(&dp->lock);
    int r = mt_find(dp->table, mac, (uint16_t)vlan, now_ms(dp), out) < 0 ? -ENOENT : 0;
    pthread_mutex_unlock(&dp->lock);
    return r;
}

void dp_table_flush(dp_t *dp)
{
    pthread_mutex_lock(&dp->lock);
    mt_flush(dp->table);
    pthread_mutex_unlock(&dp->lock);
}

void dp_clock_manual(dp_t *dp, int64_t now)
{
    pthread_mutex_lock(&dp->lock);
    dp->manual_clock = 1;
    dp->manual_now = now;
    mt_expire(dp->table, now);
    pthread_mutex_unlock(&dp->lock);
}

void dp_clock_real(dp_t *dp)
{
    pthread_mutex_lock(&dp->lock);
    dp->manual_clock = 0;
    pthread_mutex_unlock(&dp->lock);
}

int64_t dp_clock_now(dp_t *dp)
{
    pthread_mutex_lock(&dp->lock);
    int64_t n = now_ms(dp);
    pthread_mutex_unlock(&dp->lock);
    return n;
}

/* ---------------------------------------------------------------- VLAN API */

int dp_vlan_create(dp_t *dp, int vlan)
{
    pthread_mutex_lock(&dp->lock);
    int r = !valid_vlan(vlan) ? -EINVAL : dp->vlans[vlan].exists ? -EEXIST : vlan_alloc(dp, vlan);
    pthread_mutex_unlock(&dp->lock);
    return r;
}

int dp_vlan_remove(dp_t *dp, int vlan)
{
    int r = 0;
    pthread_mutex_lock(&dp->lock);
    if (!valid_vlan(vlan) || !dp->vlans[vlan].exists) {
        r = valid_vlan(vlan) ? -ENXIO : -EINVAL;
        goto out;
    }
    for (int p = 0; p < dp->nslots; p++) {
        if (is_member(dp, vlan, p)) {
            r = -EADDRINUSE;
            goto out;
        }
    }
    struct vlan *vl = &dp->vlans[vlan];
    free(vl->tagged);
    free(vl->flood);
    vl->tagged = NULL;
    vl->flood = NULL;
    vl->exists = 0;
    vl->nflood = 0;
    mt_flush_vlan(dp->table, (uint16_t)vlan);
out:
    pthread_mutex_unlock(&dp->lock);
    return r;
}

int dp_vlan_exists(dp_t *dp, int vlan)
{
    return valid_vlan(vlan) && dp->vlans[vlan].exists;
}

int dp_port_set_untagged(dp_t *dp, int port, int vlan)
{
    int r = 0;
    pthread_mutex_lock(&dp->lock);
    if (!valid_port(dp, port) || (vlan != DP_NOVLAN && !valid_vlan(vlan))) {
        r = -EINVAL;
    } else if (vlan != DP_NOVLAN && !dp->vlans[vlan].exists) {
        r = -ENXIO;
    } else {
        int old = dp->ports[port].untagged;
        dp->ports[port].untagged = (uint16_t)vlan;
        if (vlan != DP_NOVLAN && bit(dp->vlans[vlan].tagged, port))   /* untagged replaces tagged */
            dp->vlans[vlan].tagged[port >> 6] &= ~(1ULL << (port & 63));
        mt_flush_port(dp->table, port);
        if (old != DP_NOVLAN)
            rebuild_vlan(dp, old);
        if (vlan != DP_NOVLAN)
            rebuild_vlan(dp, vlan);
    }
    pthread_mutex_unlock(&dp->lock);
    return r;
}

int dp_port_get_untagged(dp_t *dp, int port)
{
    return valid_port(dp, port) ? dp->ports[port].untagged : -EINVAL;
}

static int set_tagged(dp_t *dp, int vlan, int port, int on)
{
    int r = 0;
    pthread_mutex_lock(&dp->lock);
    if (!valid_port(dp, port) || !valid_vlan(vlan)) {
        r = -EINVAL;
    } else if (!dp->vlans[vlan].exists) {
        r = -ENXIO;
    } else if (bit(dp->vlans[vlan].tagged, port) == on) {
        r = on ? -EEXIST : -ENOENT;
    } else {
        uint64_t m = 1ULL << (port & 63);
        if (on)
            dp->vlans[vlan].tagged[port >> 6] |= m;
        else
            dp->vlans[vlan].tagged[port >> 6] &= ~m;
        mt_flush_port(dp->table, port);
        rebuild_vlan(dp, vlan);
    }
    pthread_mutex_unlock(&dp->lock);
    return r;
}

int dp_vlan_add_tagged(dp_t *dp, int vlan, int port) { return set_tagged(dp, vlan, port, 1); }
int dp_vlan_del_tagged(dp_t *dp, int vlan, int port) { return set_tagged(dp, vlan, port, 0); }

int dp_vlan_is_tagged(dp_t *dp, int vlan, int port)
{
    pthread_mutex_lock(&dp->lock);
    int r = valid_port(dp, port) && valid_vlan(vlan) && bit(dp->vlans[vlan].tagged, port);
    pthread_mutex_unlock(&dp->lock);
    return r;
}

int dp_vlan_stats(dp_t *dp, int vlan, struct dp_vlan_stats *out)
{
    pthread_mutex_lock(&dp->lock);
    int r = valid_vlan(vlan) && dp->vlans[vlan].exists ? 0 : -ENXIO;
    if (!r)
        *out = dp->vlans[vlan].st;
    pthread_mutex_unlock(&dp->lock);
    return r;
}

/* ---------------------------------------------------------------- events API */

int dp_event_fd(dp_t *dp) { return dp->evfd; }

void dp_set_hash_events(dp_t *dp, int on)
{
    pthread_mutex_lock(&dp->lock);
    dp->hash_events = !!on;
    pthread_mutex_unlock(&dp->lock);
}

int dp_events_read(dp_t *dp, struct dp_event *out, int max)
{
    pthread_mutex_lock(&dp->lock);
    uint64_t junk;
    if (read(dp->evfd, &junk, sizeof junk) < 0) { /* nothing was signalled */ }
    int n = 0;
    while (n < max && dp->ev_len) {
        out[n++] = dp->ev[dp->ev_head];
        dp->ev_head = (dp->ev_head + 1) % EVCAP;
        dp->ev_len--;
    }
    if (dp->ev_len) {   /* more than max waiting: stay readable */
        uint64_t one = 1;
        if (write(dp->evfd, &one, sizeof one) < 0) { /* already readable */ }
    }
    pthread_mutex_unlock(&dp->lock);
    return n;
}

/* --------------------------------------------------------------- capture API */

int dp_capture_start(dp_t *dp, int port, int fd, int64_t offset)
{
    int r = 0;
    pthread_mutex_lock(&dp->lock);
    if (!valid_port(dp, port) || fd < 0 || offset < 0) {
        r = -EINVAL;
    } else if (dp->ports[port].cap) {
        r = -EBUSY;
    } else {
        struct capture *c = calloc(1, sizeof *c);
        uint8_t *b0 = malloc(CAPBUF), *b1 = malloc(CAPBUF);
        if (!c || !b0 || !b1) {
            free(c);
            free(b0);
            free(b1);
            r = -ENOMEM;
        } else {
            c->fd = fd;
            c->good = offset;
            c->buf[0] = b0;
            c->buf[1] = b1;
            pthread_mutex_lock(&dp->cap_lock);
            c->next = dp->caps;
            dp->caps = c;
            pthread_mutex_unlock(&dp->cap_lock);
            dp->ports[port].cap = c;
            memset(&dp->ports[port].capinfo, 0, sizeof dp->ports[port].capinfo);
            dp->ports[port].capinfo.active = 1;
            dp->ncaptures++;
            clock_gettime(CLOCK_REALTIME, &dp->round_ts);
        }
    }
    pthread_mutex_unlock(&dp->lock);
    return r;
}

int dp_capture_stop(dp_t *dp, int port)
{
    int r = 0;
    pthread_mutex_lock(&dp->lock);
    if (!valid_port(dp, port)) {
        r = -EINVAL;
    } else if (!dp->ports[port].cap) {
        r = -ENOENT;
    } else {
        r = -capture_close(dp, port, 1);   /* a write that failed before or now: its errno */
    }
    pthread_mutex_unlock(&dp->lock);
    return r;
}

int dp_capture_info(dp_t *dp, int port, struct dp_capture_info *out)
{
    pthread_mutex_lock(&dp->lock);
    int r = valid_port(dp, port) ? 0 : -EINVAL;
    if (!r)
        *out = dp->ports[port].capinfo;
    pthread_mutex_unlock(&dp->lock);
    return r;
}

/* ---------------------------------------------------------------- mirror API */

int dp_mirror_set(dp_t *dp, int src, int dst)
{
    int r = 0;
    pthread_mutex_lock(&dp->lock);
    if (!valid_port(dp, src) || (dst != -1 && !valid_port(dp, dst)) || dst == src) {
        r = -EINVAL;
    } else if (dst >= 0 && dp->ports[dst].mirror >= 0) {
        r = -ELOOP;   /* a mirror destination cannot itself be mirrored: no chains */
    } else if (dst >= 0 && dp->ports[src].mirror_refs > 0) {
        r = -ELOOP;
    } else {
        int old = dp->ports[src].mirror;
        if (old >= 0)
            dp->ports[old].mirror_refs--;
        dp->ports[src].mirror = dst;
        if (dst >= 0) {
            dp->ports[dst].mirror_refs++;
            mt_flush_port(dp->table, dst);
        }
        port_changed(dp, -1);
    }
    pthread_mutex_unlock(&dp->lock);
    return r;
}

int dp_mirror_get(dp_t *dp, int src)
{
    pthread_mutex_lock(&dp->lock);
    int r = valid_port(dp, src) ? dp->ports[src].mirror : -EINVAL;
    pthread_mutex_unlock(&dp->lock);
    return r;
}

int dp_mirror_sources(dp_t *dp, int dst)
{
    pthread_mutex_lock(&dp->lock);
    int r = valid_port(dp, dst) ? dp->ports[dst].mirror_refs : -EINVAL;
    pthread_mutex_unlock(&dp->lock);
    return r;
}
