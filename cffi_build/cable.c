/*
 * cable.c — see cable.h.
 *
 * Theory of operation
 * ===================
 * One thread polls the switch's data socket, the UDP socket(s), the watch fd and a stop
 * pipe. Each readable source is read in a batch of up to BATCH datagrams (recvmmsg);
 * the batch is turned into the other side's datagrams (sealed, opened, given or stripped
 * of a VXLAN header, or as they are) under the engine's lock, and written with one
 * sendmmsg. A destination that is full (the switch's socket) is waited for a little
 * (SEND_WAIT_MS) before the rest of the batch is dropped and counted: a cable is a
 * network, and a stalled switch must not stall the other direction for long.
 *
 * Sessions (sealed): three slots, CURRENT (sends and receives), PENDING (receives; the
 * first authentic DATA under it makes it CURRENT: the handshake's confirmation) and
 * PREVIOUS (receives until it expires, so frames in flight when the keys change are not
 * lost). A DATA's receiver index picks the slot; its counter is checked against the
 * slot's replay window before the (costly) decryption and marked after it succeeds.
 * The peer's address is the source of the last authentic datagram of CURRENT (roaming).
 *
 * UDP segmentation offload: consecutive datagrams of a batch to one destination, all of
 * one size but the last, leave as one send with UDP_SEGMENT (the kernel's IP, UDP and
 * device layers are crossed once for up to 64 of them), and the socket takes UDP_GRO,
 * so the peer's kernel may hand over such a train whole; the engine cuts it at the
 * size the control message gives. Without either (an old kernel), datagrams go one by
 * one as before.
 *
 * VXLAN learning uses the switch's MAC table (mac_table.c) with the index of a VTEP
 * (address, port) in place of a port number.
 */
#define _GNU_SOURCE
#include "cable.h"
#include "clock.h"
#include "mac_table.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define BATCH 64
#define NET_SLOT (65536 + 64)
#define SEND_WAIT_MS 50
#define EVENTS 64
#define MAX_VTEPS 1024
#define MAX_LOCAL 32
#define WINDOW 1024
#define PREVIOUS_MS 10000       /* a replaced session still receives this long */
#define EVENTS_PER_S 64         /* CONTROL and UNKNOWN events a second, at most */
#define GSO_MAX_SEGS 64
#define GSO_MAX_BYTES 65000     /* a UDP payload stays under 65507 */
#define CTRL_SPACE 64           /* room for one UDP_GRO / UDP_SEGMENT control message */

/* ------------------------------------------------------------------ pure parts */

/* Seen before, or older than the window: checked without marking (decryption comes
 * between the check and the mark). */
static int replay_seen(const struct cable_replay *r, uint64_t counter)
{
    if (counter >= r->top)
        return 0;
    if (r->top - counter > WINDOW)
        return 1;
    return (r->bits[(counter % WINDOW) / 64] >> (counter % 64)) & 1;
}

/* Marks a counter not seen: ahead of the window, the window slides to it first. */
static void replay_mark(struct cable_replay *r, uint64_t counter)
{
    if (counter >= r->top) {
        if (counter + 1 - r->top >= WINDOW)
            memset(r->bits, 0, sizeof r->bits);
        else
            for (uint64_t c = r->top; c <= counter; c++)
                r->bits[(c % WINDOW) / 64] &= ~(1ull << (c % 64));
        r->top = counter + 1;
    }
    r->bits[(counter % WINDOW) / 64] |= 1ull << (counter % 64);
}

int cable_replay_check(struct cable_replay *r, uint64_t counter)
{
    if (replay_seen(r, counter))
        return -1;
    replay_mark(r, counter);
    return 0;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static void nonce_of(uint8_t nonce[12], uint64_t counter)
{
    memset(nonce, 0, 4);
    put_le64(nonce + 4, counter);
}

int cable_seal(const uint8_t *key, uint32_t index, uint64_t counter, const uint8_t *frame,
               uint32_t len, uint8_t *out)
{
    uint8_t nonce[12];
    out[0] = CABLE_DATA;
    put_le32(out + 1, index);
    put_le64(out + 5, counter);
    nonce_of(nonce, counter);
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(
        out + CABLE_HEADER, out + CABLE_HEADER + len, NULL, frame, len, out, CABLE_HEADER,
        NULL, nonce, key);
    return (int)(CABLE_HEADER + len + CABLE_TAG);
}

int cable_open(const uint8_t *key, const uint8_t *dgram, uint32_t len, uint8_t *frame)
{
    if (len < CABLE_HEADER + CABLE_TAG || dgram[0] != CABLE_DATA)
        return -1;
    uint8_t nonce[12];
    uint32_t n = len - CABLE_HEADER - CABLE_TAG;
    nonce_of(nonce, get_le64(dgram + 5));
    if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(
            frame, NULL, dgram + CABLE_HEADER, n, dgram + CABLE_HEADER + n, dgram,
            CABLE_HEADER, nonce, key) != 0)
        return -1;
    return (int)n;
}

/* ------------------------------------------------------------------ the engine */

struct session {
    int used;
    uint32_t my_index, peer_index;
    uint8_t send_key[32], recv_key[32];
    uint64_t send_counter;
    struct cable_replay replay;
    int64_t expires_ms;         /* PREVIOUS: until then */
};

struct vtep {
    uint32_t addr;
    uint16_t port;
    int64_t seen_ms;            /* the last datagram from it: the oldest makes room */
};

struct batch {
    struct mmsghdr msg[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_in addr[BATCH];
    uint8_t ctrl[BATCH][CTRL_SPACE];   /* received: UDP_GRO's segment size */
    uint8_t *slots;             /* BATCH slots */
    size_t slot;
    int n;
};

struct cable_engine {
    struct cable_config cfg;
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    int stop_pipe[2];
    int event_pipe[2];
    volatile int ended;
    struct cable_stats stats;
    struct session sess[3];
    uint32_t peer_addr;
    uint16_t peer_port;
    /* events */
    struct cable_event events[EVENTS];
    int ev_head, ev_count;
    int64_t budget_at_ms;       /* the second the event budget is for */
    int budget;                 /* CONTROL and UNKNOWN events left in it */
    /* vxlan, vxvde */
    struct mac_table *macs;
    struct vtep vteps[MAX_VTEPS];
    int n_vteps;
    int last_vtep;
    uint16_t own_port;
    uint32_t local[MAX_LOCAL];
    int n_local;
    uint8_t vx_header[CABLE_VX_HEADER];
    int gso;                    /* UDP_SEGMENT may be used (until the kernel refuses it) */
    /* buffers: what came in from each side, what goes out to each side */
    struct batch from_switch, to_net, from_net, to_switch;
};

static void push_event(struct cable_engine *e, const struct cable_event *ev)
{
    if (e->ev_count == EVENTS) {
        if (ev->kind != CABLE_EV_ENDED)
            return;             /* Python is far behind: the handshake retries */
        e->ev_count--;          /* the end is never lost: it takes the last place */
    }
    e->events[(e->ev_head + e->ev_count) % EVENTS] = *ev;
    if (e->ev_count++ == 0) {
        char c = 1;
        (void)!write(e->event_pipe[1], &c, 1);
    }
}

static int batch_alloc(struct batch *b, size_t slot)
{
    b->slot = slot;
    b->slots = malloc(BATCH * slot);
    return b->slots ? 0 : -1;
}

static void sockaddr_of(struct sockaddr_in *sa, uint32_t addr, uint16_t port)
{
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = addr;
    sa->sin_port = htons(port);
}

static void local_addresses(struct cable_engine *e)
{
    struct ifaddrs *list;
    if (getifaddrs(&list) < 0)
        return;
    for (struct ifaddrs *i = list; i && e->n_local < MAX_LOCAL; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET)
            e->local[e->n_local++] = ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
    freeifaddrs(list);
}

struct cable_engine *cable_new(const struct cable_config *cfg)
{
    if (sodium_init() < 0 || cfg->mode < CABLE_PLAIN || cfg->mode > CABLE_VXVDE
        || cfg->max_frame < 14 || cfg->max_frame > CABLE_MAX_FRAME
        || cfg->n_peers > CABLE_MAX_PEERS || cfg->switch_fd < 0 || cfg->udp_fd < 0)
        return NULL;
    struct cable_engine *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->cfg = *cfg;
    e->stop_pipe[0] = e->stop_pipe[1] = e->event_pipe[0] = e->event_pipe[1] = -1;
    pthread_mutex_init(&e->lock, NULL);
    e->peer_addr = cfg->peer_addr;
    e->peer_port = cfg->peer_port;
    if (pipe2(e->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0
        || pipe2(e->event_pipe, O_CLOEXEC | O_NONBLOCK) < 0
        || batch_alloc(&e->from_switch, cfg->max_frame + 1) < 0
        || batch_alloc(&e->to_net, cfg->max_frame + CABLE_HEADER + CABLE_TAG + 16) < 0
        || batch_alloc(&e->from_net, NET_SLOT) < 0
        || batch_alloc(&e->to_switch, NET_SLOT) < 0)
        goto fail;
    int on = 1;
    e->gso = 1;
    setsockopt(cfg->udp_fd, SOL_UDP, UDP_GRO, &on, sizeof on);
    if (cfg->mcast_fd >= 0)
        setsockopt(cfg->mcast_fd, SOL_UDP, UDP_GRO, &on, sizeof on);
    if (cfg->mode == CABLE_VXLAN || cfg->mode == CABLE_VXVDE) {
        e->macs = mt_new(1024, 8192);
        if (!e->macs)
            goto fail;
        mt_set_times(e->macs, cfg->expire_ms ? cfg->expire_ms : 128000, 0);
        uint8_t *h = e->vx_header;
        memset(h, 0, CABLE_VX_HEADER);
        h[0] = 0x08;
        h[4] = (uint8_t)(cfg->vni >> 16);
        h[5] = (uint8_t)(cfg->vni >> 8);
        h[6] = (uint8_t)cfg->vni;
        struct sockaddr_in me;
        socklen_t mlen = sizeof me;
        if (getsockname(cfg->udp_fd, (struct sockaddr *)&me, &mlen) == 0)
            e->own_port = ntohs(me.sin_port);
        local_addresses(e);
    }
    return e;
fail:
    cable_free(e);
    return NULL;
}

void cable_free(struct cable_engine *e)
{
    if (!e)
        return;
    cable_stop(e);
    for (int i = 0; i < 2; i++) {
        if (e->stop_pipe[i] >= 0)
            close(e->stop_pipe[i]);
        if (e->event_pipe[i] >= 0)
            close(e->event_pipe[i]);
    }
    free(e->from_switch.slots);
    free(e->to_net.slots);
    free(e->from_net.slots);
    free(e->to_switch.slots);
    if (e->macs)
        mt_free(e->macs);
    sodium_memzero(e->sess, sizeof e->sess);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

int cable_ended(struct cable_engine *e) { return e->ended; }
int cable_event_fd(struct cable_engine *e) { return e->event_pipe[0]; }

int cable_next_event(struct cable_engine *e, struct cable_event *out)
{
    pthread_mutex_lock(&e->lock);
    int got = e->ev_count > 0;
    if (got) {
        *out = e->events[e->ev_head];
        e->ev_head = (e->ev_head + 1) % EVENTS;
        e->ev_count--;
    }
    if (!e->ev_count) {
        char buf[64];
        while (read(e->event_pipe[0], buf, sizeof buf) > 0)
            ;
    }
    pthread_mutex_unlock(&e->lock);
    return got;
}

/* The current session becomes the previous one, receiving until expires_ms. */
static void retire_current(struct cable_engine *e, int64_t expires_ms)
{
    if (e->sess[CABLE_CURRENT].used) {
        e->sess[CABLE_PREVIOUS] = e->sess[CABLE_CURRENT];
        e->sess[CABLE_PREVIOUS].expires_ms = expires_ms;
    }
}

int cable_install(struct cable_engine *e, int slot, uint32_t my_index, uint32_t peer_index,
                  const uint8_t *send_key, const uint8_t *recv_key, uint32_t addr,
                  uint16_t port)
{
    if (e->cfg.mode != CABLE_SEALED || (slot != CABLE_CURRENT && slot != CABLE_PENDING))
        return -1;
    struct session s = {.used = 1, .my_index = my_index, .peer_index = peer_index};
    memcpy(s.send_key, send_key, 32);
    memcpy(s.recv_key, recv_key, 32);
    pthread_mutex_lock(&e->lock);
    if (slot == CABLE_CURRENT) {
        retire_current(e, monotonic_ms() + PREVIOUS_MS);
        e->peer_addr = addr;
        e->peer_port = port;
    }
    e->sess[slot] = s;
    pthread_mutex_unlock(&e->lock);
    sodium_memzero(&s, sizeof s);
    return 0;
}

static ssize_t send_to(struct cable_engine *e, const uint8_t *data, size_t len, uint32_t addr,
                       uint16_t port)
{
    struct sockaddr_in sa;
    sockaddr_of(&sa, addr, port);
    return sendto(e->cfg.udp_fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL,
                  (struct sockaddr *)&sa, sizeof sa);
}

int cable_keepalive(struct cable_engine *e)
{
    uint8_t out[CABLE_HEADER + CABLE_TAG];
    pthread_mutex_lock(&e->lock);
    struct session *s = &e->sess[CABLE_CURRENT];
    int rc = -1;
    if (s->used && e->peer_port) {
        cable_seal(s->send_key, s->peer_index, s->send_counter++, NULL, 0, out);
        if (send_to(e, out, sizeof out, e->peer_addr, e->peer_port) >= 0) {
            e->stats.keepalives_out++;
            e->stats.last_tx_ms = monotonic_ms();
            rc = 0;
        }
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}

int cable_send_raw(struct cable_engine *e, const uint8_t *data, uint32_t len, uint32_t addr,
                   uint16_t port)
{
    ssize_t r = send_to(e, data, len, addr, port);     /* no shared state: no lock */
    return r < 0 ? -errno : 0;
}

void cable_get_stats(struct cable_engine *e, struct cable_stats *out)
{
    pthread_mutex_lock(&e->lock);
    *out = e->stats;
    out->peer_addr = e->peer_addr;
    out->peer_port = e->peer_port;
    pthread_mutex_unlock(&e->lock);
}

/* ------------------------------------------------------------------ batches */

static int read_batch(int fd, struct batch *b, int with_addr)
{
    for (int i = 0; i < BATCH; i++) {
        b->iov[i] = (struct iovec){b->slots + (size_t)i * b->slot, b->slot};
        memset(&b->msg[i].msg_hdr, 0, sizeof b->msg[i].msg_hdr);
        b->msg[i].msg_hdr.msg_iov = &b->iov[i];
        b->msg[i].msg_hdr.msg_iovlen = 1;
        if (with_addr) {
            b->msg[i].msg_hdr.msg_name = &b->addr[i];
            b->msg[i].msg_hdr.msg_namelen = sizeof b->addr[i];
            b->msg[i].msg_hdr.msg_control = b->ctrl[i];
            b->msg[i].msg_hdr.msg_controllen = CTRL_SPACE;
        }
    }
    int n = recvmmsg(fd, b->msg, BATCH, MSG_DONTWAIT, NULL);
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
                || errno == ECONNREFUSED) ? 0 : -errno;
    b->n = n;
    return n;
}

/* Starts an outgoing batch entry i: one iovec of len bytes at data (to addr if given). */
static void out_entry(struct batch *b, const uint8_t *data, size_t len,
                      const struct sockaddr_in *to)
{
    int i = b->n++;
    b->iov[i] = (struct iovec){(void *)data, len};
    memset(&b->msg[i].msg_hdr, 0, sizeof b->msg[i].msg_hdr);
    b->msg[i].msg_hdr.msg_iov = &b->iov[i];
    b->msg[i].msg_hdr.msg_iovlen = 1;
    if (to) {
        b->addr[i] = *to;
        b->msg[i].msg_hdr.msg_name = &b->addr[i];
        b->msg[i].msg_hdr.msg_namelen = sizeof b->addr[i];
    }
}

/* The datagrams of a batch regrouped for UDP_SEGMENT: runs to one destination, of one
 * size but a shorter last, become one message each. Returns the number of messages;
 * first[k] is the batch index message k starts at. */
static int gso_group(struct batch *b, struct mmsghdr *m, struct iovec *v,
                     uint8_t (*ctrl)[CTRL_SPACE], int *first)
{
    int nm = 0, i = 0;
    while (i < b->n) {
        size_t size = b->iov[i].iov_len, total = size;
        int j = i + 1;
        while (j < b->n && j - i < GSO_MAX_SEGS
               && b->iov[j].iov_len <= size && total + b->iov[j].iov_len <= GSO_MAX_BYTES
               && b->iov[j - 1].iov_len == size
               && b->addr[j].sin_addr.s_addr == b->addr[i].sin_addr.s_addr
               && b->addr[j].sin_port == b->addr[i].sin_port)
            total += b->iov[j++].iov_len;
        memset(&m[nm], 0, sizeof m[nm]);
        struct msghdr *h = &m[nm].msg_hdr;
        for (int k = i; k < j; k++)
            v[k] = b->iov[k];
        h->msg_iov = &v[i];
        h->msg_iovlen = (size_t)(j - i);
        h->msg_name = b->msg[i].msg_hdr.msg_name;
        h->msg_namelen = b->msg[i].msg_hdr.msg_namelen;
        if (j - i > 1) {
            h->msg_control = ctrl[nm];
            h->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
            struct cmsghdr *c = CMSG_FIRSTHDR(h);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t seg = (uint16_t)size;
            memcpy(CMSG_DATA(c), &seg, sizeof seg);
        }
        first[nm++] = i;
        i = j;
    }
    first[nm] = b->n;
    return nm;
}

/* What a flush delivered or lost, added to the stats under the lock at its end. */
struct tally {
    uint64_t frames, bytes, errors;
};

static void add_tally(struct cable_engine *e, const struct tally *t, int to_net)
{
    pthread_mutex_lock(&e->lock);
    if (to_net) {
        e->stats.to_net_frames += t->frames;
        e->stats.to_net_bytes += t->bytes;
        if (t->frames)
            e->stats.last_tx_ms = monotonic_ms();
    } else {
        e->stats.from_net_frames += t->frames;
        e->stats.from_net_bytes += t->bytes;
    }
    e->stats.send_errors += t->errors;
    pthread_mutex_unlock(&e->lock);
}

/* Drops the first `from` entries of a batch (sent already): the rest moves to the front. */
static void batch_shift(struct batch *b, int from)
{
    memmove(b->msg, b->msg + from, sizeof b->msg[0] * (size_t)(b->n - from));
    for (int i = 0; i < b->n - from; i++) {
        b->iov[i] = b->iov[from + i];
        b->addr[i] = b->addr[from + i];
        b->msg[i].msg_hdr.msg_iov = &b->iov[i];
        if (b->msg[i].msg_hdr.msg_name)
            b->msg[i].msg_hdr.msg_name = &b->addr[i];
    }
    b->n -= from;
}

/* Sends what it can of a batch to the network with UDP_SEGMENT. Anything it cannot
 * send so (no room now, a group the kernel refuses: EINVAL when a segment is too long
 * for the route) stays in the batch, moved to its front, for flush_batch to send one
 * by one, with its wait for room. Segmentation is given up for good only when the
 * kernel does not offer it (EIO, ENOPROTOOPT). */
static void flush_gso(struct cable_engine *e, struct batch *b, struct tally *t)
{
    struct mmsghdr m[BATCH];
    struct iovec v[BATCH];
    uint8_t ctrl[BATCH][CTRL_SPACE];
    int first[BATCH + 1];
    int nm = gso_group(b, m, v, ctrl, first);
    if (nm == b->n)
        return;                                 /* nothing to group: the plain way */
    int done = 0;
    while (done < nm) {
        int r = sendmmsg(e->cfg.udp_fd, m + done, (unsigned)(nm - done),
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (errno == EIO || errno == ENOPROTOOPT)
                e->gso = 0;
            break;
        }
        for (int k = done; k < done + r; k++)
            for (int i = first[k]; i < first[k + 1]; i++) {
                t->frames++;
                t->bytes += b->iov[i].iov_len;
            }
        done += r;
    }
    batch_shift(b, first[done]);
}

/* Sends a batch; waits a little for room (a full switch), then drops and counts. */
static void flush_batch(struct cable_engine *e, int fd, struct batch *b, int to_net)
{
    struct tally t = {0, 0, 0};
    if (to_net && e->gso && b->n > 1)
        flush_gso(e, b, &t);
    int done = 0;
    int64_t give_up = -1;
    while (done < b->n) {
        int r = sendmmsg(fd, b->msg + done, (unsigned)(b->n - done), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r > 0) {
            for (int i = done; i < done + r; i++) {
                t.frames++;
                t.bytes += b->msg[i].msg_len;
            }
            done += r;
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
            int64_t now = monotonic_ms();
            if (give_up < 0)
                give_up = now + SEND_WAIT_MS;
            if (now < give_up) {
                struct pollfd p = {fd, POLLOUT, 0};
                poll(&p, 1, (int)(give_up - now));
                continue;
            }
        } else if (r < 0 && errno == EINTR) {
            continue;
        }
        t.errors++;                 /* refused (EMSGSIZE, unreachable) or no room: dropped */
        done++;
    }
    b->n = 0;
    if (t.frames || t.errors)
        add_tally(e, &t, to_net);
}

/* ------------------------------------------------------------------ switch -> net */

/* The index of VTEP addr:port (learned MACs point to it); with add, a new one is made,
 * and when the table is full the one heard from longest ago makes room (its MACs are
 * forgotten). The last one found is tried first: most datagrams come in runs. */
static int vtep_index(struct cable_engine *e, uint32_t addr, uint16_t port, int add,
                      int64_t now)
{
    int i = e->last_vtep;
    if (i >= e->n_vteps || e->vteps[i].addr != addr || e->vteps[i].port != port)
        for (i = 0; i < e->n_vteps; i++)
            if (e->vteps[i].addr == addr && e->vteps[i].port == port)
                break;
    if (i == e->n_vteps) {
        if (!add)
            return -1;
        if (e->n_vteps < MAX_VTEPS) {
            e->n_vteps++;
        } else {
            i = 0;
            for (int k = 1; k < MAX_VTEPS; k++)
                if (e->vteps[k].seen_ms < e->vteps[i].seen_ms)
                    i = k;
            mt_flush_port(e->macs, i);
        }
        e->vteps[i] = (struct vtep){addr, port, now};
    }
    if (add)
        e->vteps[i].seen_ms = now;
    e->last_vtep = i;
    return i;
}

/* vxlan/vxvde: the frame (already behind its header at data, len bytes in all) to the
 * VTEP its destination was learned at, or flooded: the group, and every --peer. */
static void vx_out(struct cable_engine *e, const uint8_t *data, size_t len,
                   const uint8_t *dst_mac, int64_t now)
{
    struct sockaddr_in to;
    int idx = (dst_mac[0] & 1) ? -1 : mt_lookup(e->macs, dst_mac, 0, now);
    if (idx >= 0) {
        sockaddr_of(&to, e->vteps[idx].addr, e->vteps[idx].port);
        out_entry(&e->to_net, data, len, &to);
        return;
    }
    if (e->cfg.group_addr && e->to_net.n < BATCH) {
        sockaddr_of(&to, e->cfg.group_addr, e->cfg.udp_port);
        out_entry(&e->to_net, data, len, &to);
    }
    for (uint32_t p = 0; p < e->cfg.n_peers && e->to_net.n < BATCH; p++) {
        sockaddr_of(&to, e->cfg.peers[p], e->cfg.udp_port);
        out_entry(&e->to_net, data, len, &to);
    }
}

static void switch_to_net(struct cable_engine *e, int n)
{
    struct batch *in = &e->from_switch, *out = &e->to_net;
    int64_t now = monotonic_ms();
    pthread_mutex_lock(&e->lock);
    struct session *s = &e->sess[CABLE_CURRENT];
    struct sockaddr_in peer;
    sockaddr_of(&peer, e->peer_addr, e->peer_port);
    int flood_room = e->cfg.mode == CABLE_VXLAN || e->cfg.mode == CABLE_VXVDE;
    for (int i = 0; i < n; i++) {
        uint8_t *frame = in->slots + (size_t)i * in->slot;
        size_t len = in->msg[i].msg_len;
        if ((in->msg[i].msg_hdr.msg_flags & MSG_TRUNC) || len > e->cfg.max_frame) {
            e->stats.oversize++;
            continue;
        }
        if (len < 14) {
            if (len)
                e->stats.runts++;
            continue;
        }
        if (out->n >= BATCH - (flood_room ? (int)e->cfg.n_peers + 1 : 0)) {
            pthread_mutex_unlock(&e->lock);
            flush_batch(e, e->cfg.udp_fd, out, 1);
            pthread_mutex_lock(&e->lock);
        }
        uint8_t *slot = out->slots + (size_t)out->n * out->slot;
        switch (e->cfg.mode) {
        case CABLE_PLAIN:
            if (!e->peer_port) {
                e->stats.no_session++;
                break;
            }
            out_entry(out, frame, len, &peer);
            break;
        case CABLE_SEALED:
            if (!s->used || !e->peer_port) {
                e->stats.no_session++;
                break;
            }
            out_entry(out, slot,
                      (size_t)cable_seal(s->send_key, s->peer_index, s->send_counter++, frame,
                                         (uint32_t)len, slot),
                      &peer);
            break;
        default:    /* vxlan, vxvde: the header, then the frame */
            memcpy(slot, e->vx_header, CABLE_VX_HEADER);
            memcpy(slot + CABLE_VX_HEADER, frame, len);
            vx_out(e, slot, CABLE_VX_HEADER + len, frame, now);
            break;
        }
    }
    pthread_mutex_unlock(&e->lock);
    flush_batch(e, e->cfg.udp_fd, out, 1);
}

/* ------------------------------------------------------------------ net -> switch */

static int is_local(const struct cable_engine *e, uint32_t addr)
{
    for (int i = 0; i < e->n_local; i++)
        if (e->local[i] == addr)
            return 1;
    return 0;
}

static int find_session(struct cable_engine *e, uint32_t index, int64_t now)
{
    for (int k = 0; k < 3; k++) {
        struct session *s = &e->sess[k];
        if (!s->used || s->my_index != index)
            continue;
        if (k == CABLE_PREVIOUS && now >= s->expires_ms) {
            s->used = 0;
            continue;
        }
        return k;
    }
    return -1;
}

/* A CONTROL or UNKNOWN event may go to Python: at most EVENTS_PER_S a second, so a
 * flood cannot crowd out the handshake for long nor keep Python busy. */
static int event_budget(struct cable_engine *e, int64_t now)
{
    if (now - e->budget_at_ms >= 1000) {
        e->budget_at_ms = now;
        e->budget = EVENTS_PER_S;
    }
    if (e->budget <= 0)
        return 0;
    e->budget--;
    return 1;
}

/* A handshake datagram as handshake.py builds them: type, version 1, exact length. */
static int handshake_shaped(const uint8_t *d, uint32_t len)
{
    return len >= 2 && d[1] == 1
           && ((d[0] == 1 && len == 54) || (d[0] == 2 && len == 50) || (d[0] == 5 && len == 30));
}

/* A sealed datagram in; returns the frame's length in out (0: nothing to deliver). */
static uint32_t sealed_in(struct cable_engine *e, const uint8_t *d, uint32_t len,
                          const struct sockaddr_in *from, uint8_t *out, int64_t now)
{
    if (len == 0) {
        e->stats.truncated++;
        return 0;
    }
    if (d[0] != CABLE_DATA) {
        struct cable_event ev = {.kind = CABLE_EV_CONTROL, .addr = from->sin_addr.s_addr,
                                 .port = ntohs(from->sin_port)};
        if (!handshake_shaped(d, len)) {
            e->stats.bad_header++;
            return 0;
        }
        if (!event_budget(e, now)) {
            e->stats.control_dropped++;
            return 0;
        }
        memcpy(ev.data, d, len);
        ev.len = len;
        e->stats.control++;
        push_event(e, &ev);
        return 0;
    }
    if (len < CABLE_HEADER + CABLE_TAG) {
        e->stats.truncated++;
        return 0;
    }
    uint32_t index = get_le32(d + 1);
    int k = find_session(e, index, now);
    if (k < 0) {
        e->stats.unknown_index++;
        if (event_budget(e, now)) {     /* Python answers each address once a second */
            struct cable_event ev = {.kind = CABLE_EV_UNKNOWN, .index = index,
                                     .addr = from->sin_addr.s_addr,
                                     .port = ntohs(from->sin_port)};
            push_event(e, &ev);
        }
        return 0;
    }
    struct session *s = &e->sess[k];
    uint64_t counter = get_le64(d + 5);
    if (replay_seen(&s->replay, counter)) {
        e->stats.replayed++;
        return 0;
    }
    int n = cable_open(s->recv_key, d, len, out);
    if (n < 0) {
        e->stats.bad_tag++;
        return 0;
    }
    replay_mark(&s->replay, counter);
    e->stats.last_auth_rx_ms = now;
    if (k == CABLE_PENDING) {                   /* confirmed: it becomes current */
        retire_current(e, now + PREVIOUS_MS);
        e->sess[CABLE_CURRENT] = *s;
        memset(s, 0, sizeof *s);
        s = &e->sess[CABLE_CURRENT];
        k = CABLE_CURRENT;
        struct cable_event ev = {.kind = CABLE_EV_PROMOTED, .index = index,
                                 .addr = from->sin_addr.s_addr, .port = ntohs(from->sin_port)};
        push_event(e, &ev);
    }
    if (k == CABLE_CURRENT) {                   /* roaming: answer where it came from */
        e->peer_addr = from->sin_addr.s_addr;
        e->peer_port = ntohs(from->sin_port);
    }
    if (n == 0) {
        e->stats.keepalives_in++;
        return 0;
    }
    return (uint32_t)n;
}

/* A vxlan/vxvde datagram in: returns the offset of the frame (0: nothing to deliver). */
static uint32_t vx_in(struct cable_engine *e, const uint8_t *d, uint32_t len,
                      const struct sockaddr_in *from, int64_t now)
{
    uint32_t addr = from->sin_addr.s_addr;
    uint16_t port = ntohs(from->sin_port);
    if (e->cfg.mode == CABLE_VXVDE && port == e->own_port && is_local(e, addr)) {
        e->stats.own++;
        return 0;
    }
    if (len < CABLE_VX_HEADER) {
        e->stats.truncated++;
        return 0;
    }
    int ok = e->cfg.mode == CABLE_VXVDE
             ? memcmp(d, e->vx_header, CABLE_VX_HEADER) == 0
             : d[0] == 0x08 && memcmp(d + 4, e->vx_header + 4, 3) == 0;
    if (!ok) {
        e->stats.bad_header++;
        return 0;
    }
    uint16_t vtep_port = e->cfg.mode == CABLE_VXVDE ? port : e->cfg.udp_port;
    if (len == CABLE_VX_HEADER) {               /* vxvde: a peer leaves */
        int idx = vtep_index(e, addr, vtep_port, 0, now);
        if (idx >= 0)
            mt_flush_port(e->macs, idx);
        return 0;
    }
    if (len < CABLE_VX_HEADER + 14) {
        e->stats.runts++;
        return 0;
    }
    e->stats.last_auth_rx_ms = now;
    const uint8_t *src_mac = d + CABLE_VX_HEADER + 6;
    if (!(src_mac[0] & 1)) {
        int idx = vtep_index(e, addr, vtep_port, 1, now);
        if (idx >= 0) {
            int r = mt_learn(e->macs, src_mac, 0, idx, now);
            if (r == MT_NEW || r == MT_MOVED)
                e->stats.learned++;
        }
    }
    return CABLE_VX_HEADER;
}

/* One datagram from the network: what it carries joins the batch to the switch. */
static void datagram_in(struct cable_engine *e, uint8_t *d, uint32_t len,
                        const struct sockaddr_in *from, int64_t now)
{
    struct batch *out = &e->to_switch;
    if (out->n == BATCH) {                      /* a long GRO train: make room */
        pthread_mutex_unlock(&e->lock);
        flush_batch(e, e->cfg.switch_fd, out, 0);
        pthread_mutex_lock(&e->lock);
    }
    switch (e->cfg.mode) {
    case CABLE_PLAIN:
        if (len < 14) {
            e->stats.runts += len > 0;
            break;
        }
        e->stats.last_auth_rx_ms = now;
        if (!e->cfg.peer_port) {                /* --listen alone: answer the last sender */
            e->peer_addr = from->sin_addr.s_addr;
            e->peer_port = ntohs(from->sin_port);
        }
        out_entry(out, d, len, NULL);
        break;
    case CABLE_SEALED: {
        uint8_t *slot = out->slots + (size_t)out->n * out->slot;
        uint32_t m = sealed_in(e, d, len, from, slot, now);
        if (m >= 14)
            out_entry(out, slot, m, NULL);
        else if (m)
            e->stats.runts++;
        break;
    }
    default: {
        uint32_t off = vx_in(e, d, len, from, now);
        if (off)
            out_entry(out, d + off, len - off, NULL);
        break;
    }
    }
}

/* The segment size of a UDP_GRO train (0: a single datagram). */
static uint32_t gro_size(struct msghdr *h)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c))
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int size;
            memcpy(&size, CMSG_DATA(c), sizeof size);
            return size > 0 ? (uint32_t)size : 0;
        }
    return 0;
}

static void net_to_switch(struct cable_engine *e, struct batch *in, int n)
{
    int64_t now = monotonic_ms();
    pthread_mutex_lock(&e->lock);
    for (int i = 0; i < n; i++) {
        uint8_t *d = in->slots + (size_t)i * in->slot;
        uint32_t len = in->msg[i].msg_len;
        struct msghdr *h = &in->msg[i].msg_hdr;
        if (h->msg_flags & MSG_TRUNC) {
            e->stats.truncated++;
            continue;
        }
        uint32_t seg = gro_size(h);
        if (!seg || seg >= len) {
            datagram_in(e, d, len, &in->addr[i], now);
            continue;
        }
        for (uint32_t off = 0; off < len; off += seg)
            datagram_in(e, d + off, len - off < seg ? len - off : seg, &in->addr[i], now);
    }
    pthread_mutex_unlock(&e->lock);
    flush_batch(e, e->cfg.switch_fd, &e->to_switch, 0);
}

/* ------------------------------------------------------------------ the thread */

static void vxvde_goodbye(struct cable_engine *e)
{
    if (e->cfg.mode == CABLE_VXVDE && e->cfg.group_addr)
        send_to(e, e->vx_header, CABLE_VX_HEADER, e->cfg.group_addr, e->cfg.udp_port);
}

static void *run(void *arg)
{
    struct cable_engine *e = arg;
    int why = CABLE_STOPPED;
    for (;;) {
        struct pollfd p[5];
        int n = 0;
        p[n++] = (struct pollfd){e->stop_pipe[0], POLLIN, 0};
        p[n++] = (struct pollfd){e->cfg.switch_fd, POLLIN, 0};
        p[n++] = (struct pollfd){e->cfg.udp_fd, POLLIN, 0};
        int mc = -1, w = -1;
        if (e->cfg.mcast_fd >= 0) {
            mc = n;
            p[n++] = (struct pollfd){e->cfg.mcast_fd, POLLIN, 0};
        }
        if (e->cfg.watch_fd >= 0) {
            w = n;
            p[n++] = (struct pollfd){e->cfg.watch_fd, POLLIN, 0};
        }
        if (poll(p, n, 1000) < 0) {
            if (errno == EINTR)
                continue;
            e->stats.error = errno;
            why = CABLE_FAILED;
            break;
        }
        if (p[0].revents)
            break;
        int bad = 0;
        for (int i = 0; i < n; i++)
            bad |= p[i].revents & POLLNVAL;
        if (bad) {                              /* an fd was closed under us */
            e->stats.error = EBADF;
            why = CABLE_FAILED;
            break;
        }
        if ((w >= 0 && p[w].revents) || (p[1].revents & (POLLHUP | POLLERR))) {
            why = CABLE_END_SWITCH;
            break;
        }
        if (p[1].revents & POLLIN) {
            int r = read_batch(e->cfg.switch_fd, &e->from_switch, 0);
            if (r < 0) {
                why = r == -ECONNRESET || r == -ENOTCONN ? CABLE_END_SWITCH : CABLE_FAILED;
                e->stats.error = -r;
                break;
            }
            if (r > 0)
                switch_to_net(e, r);
        }
        int fds[2] = {2, mc};
        int net_fd[2] = {e->cfg.udp_fd, e->cfg.mcast_fd};
        for (int k = 0; k < 2; k++) {
            if (fds[k] < 0 || !(p[fds[k]].revents & POLLIN))
                continue;
            int r = read_batch(net_fd[k], &e->from_net, 1);
            if (r < 0) {
                e->stats.error = -r;
                why = CABLE_FAILED;
                goto out;
            }
            if (r > 0)
                net_to_switch(e, &e->from_net, r);
        }
    }
out:
    vxvde_goodbye(e);
    e->ended = why;
    pthread_mutex_lock(&e->lock);
    struct cable_event ev = {.kind = CABLE_EV_ENDED};
    push_event(e, &ev);
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

int cable_start(struct cable_engine *e)
{
    if (e->started)
        return -EBUSY;
    int r = pthread_create(&e->thread, NULL, run, e);
    if (r)
        return -r;
    e->started = 1;
    return 0;
}

void cable_stop(struct cable_engine *e)
{
    if (!e->started)
        return;
    char c = 1;
    (void)!write(e->stop_pipe[1], &c, 1);
    pthread_join(e->thread, NULL);
    e->started = 0;
}
