/*
 * tap_gso.c — see tap_gso.h.
 *
 * The merged packet is what Linux's own GRO would hand its TCP: the first segment's
 * headers with the IPv4 total length of the whole run (its header checksum redone), the
 * last segment's flags (its PSH), and a virtio_net_hdr asking for GSO TCPv4 with
 * gso_size the first payload's length and a partial checksum (NEEDS_CSUM: the TCP
 * checksum field holds the pseudo-header's sum, as a sender's offload leaves it). The
 * kernel takes a partial checksum as correct on local delivery, which is why every
 * segment's checksums are verified before it may join a run; if the host forwards the
 * packet on, GSO cuts it back into the original segments with full checksums.
 */
#include "tap_gso.h"
#include "inet_csum.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define ETH 14
#define IP4 20
#define TCP_ACK 0x10
#define TCP_PSH 0x08
#define VNET_NEEDS_CSUM 1
#define VNET_GSO_TCPV4 1
#define MAX_IP_LEN 65535

struct seg {
    const uint8_t *ip, *tcp;
    uint32_t thl, plen, seq;
    uint8_t flags;
};

static uint32_t get16(const uint8_t *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t get32(const uint8_t *p)
{
    return get16(p) << 16 | get16(p + 2);
}

static void put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_le16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* The sum of the TCP pseudo-header (addresses, protocol, TCP length). */
static uint32_t pseudo_sum(const uint8_t *ip, uint32_t tcp_len)
{
    return get16(ip + 12) + get16(ip + 14) + get16(ip + 16) + get16(ip + 18) + 6 + tcp_len;
}

/* A TCP data segment that may be part of a run (its checksums not yet looked at):
 * IPv4 without options, not a fragment, exactly the frame's length, ACK or ACK|PSH,
 * some payload. */
static int data_segment(const uint8_t *f, uint32_t len, struct seg *s)
{
    if (len < ETH + IP4 + 20 || f[12] != 0x08 || f[13] != 0x00)
        return 0;
    const uint8_t *ip = f + ETH;
    if (ip[0] != 0x45 || ip[9] != 6 || get16(ip + 2) + ETH != len
        || (ip[6] & 0xbf) || ip[7])   /* a reserved bit, MF or an offset: not merged */
        return 0;
    const uint8_t *tcp = ip + IP4;
    uint32_t thl = (uint32_t)(tcp[12] >> 4) * 4;
    if (thl < 20 || ETH + IP4 + thl >= len)
        return 0;
    uint8_t flags = tcp[13];
    if (flags != TCP_ACK && flags != (TCP_ACK | TCP_PSH))
        return 0;
    *s = (struct seg){ip, tcp, thl, len - ETH - IP4 - thl, get32(tcp + 4), flags};
    return 1;
}

static int checksums_ok(const struct seg *s)
{
    uint32_t tcp_len = s->thl + s->plen;
    return inet_checksum(s->ip, IP4, 0) == 0
           && inet_checksum(s->tcp, tcp_len, pseudo_sum(s->ip, tcp_len)) == 0;
}

/* Segment b may follow segment a (the run's last) in a run that began with first. */
static int continues(const uint8_t *fa, const struct seg *first, const struct seg *a,
                     const uint8_t *fb, const struct seg *b)
{
    return a->plen == first->plen && b->plen <= first->plen && !(a->flags & TCP_PSH)
           && b->seq == a->seq + a->plen
           && memcmp(fa, fb, 12) == 0                        /* MAC addresses */
           && a->ip[1] == b->ip[1] && a->ip[6] == b->ip[6]   /* TOS, DF */
           && a->ip[8] == b->ip[8]                           /* TTL */
           && memcmp(a->ip + 12, b->ip + 12, 8) == 0         /* addresses */
           && memcmp(a->tcp, b->tcp, 4) == 0                 /* ports */
           && memcmp(a->tcp + 8, b->tcp + 8, 4) == 0         /* ack */
           && memcmp(a->tcp + 14, b->tcp + 14, 2) == 0       /* window */
           && a->thl == b->thl && memcmp(a->tcp + 20, b->tcp + 20, a->thl - 20) == 0;
}

/* A frame alone whose TCP checksum is partial: the kernel completes it. */
static void alone_partial(const uint8_t *f, uint32_t len, struct tap_gso *g)
{
    if (len >= ETH + IP4 + 20 && f[12] == 0x08 && f[13] == 0x00 && f[ETH] == 0x45
        && f[ETH + 9] == 6) {
        g->vnet[0] = VNET_NEEDS_CSUM;
        put_le16(g->vnet + 6, ETH + IP4);            /* csum_start */
        put_le16(g->vnet + 8, 16);                   /* csum_offset */
    }
}

void tap_gso_plan(const uint8_t *const *frames, const uint32_t *lens, uint32_t n,
                  int partial, struct tap_gso *g)
{
    memset(g->vnet, 0, sizeof g->vnet);
    g->head_len = 0;
    g->count = 1;
    if (n > TAP_GSO_MAX_RUN)
        n = TAP_GSO_MAX_RUN;
    if (partial)
        alone_partial(frames[0], lens[0], g);   /* until a run is found */
    struct seg first, last, next;
    if (n < 2 || !data_segment(frames[0], lens[0], &first) || (first.flags & TCP_PSH))
        return;
    uint32_t total = IP4 + first.thl + first.plen;
    int verified = partial;
    last = first;
    uint32_t k = 1;
    for (; k < n; k++) {
        if (!data_segment(frames[k], lens[k], &next)
            || !continues(frames[k - 1], &first, &last, frames[k], &next)
            || total + next.plen > MAX_IP_LEN)
            break;
        if (!verified) {   /* the first segment is checked once a run is in sight */
            if (!checksums_ok(&first))
                return;
            verified = 1;
        }
        if (!partial && !checksums_ok(&next))
            break;
        total += next.plen;
        last = next;
    }
    if (k < 2)
        return;
    memset(g->vnet, 0, sizeof g->vnet);

    uint32_t head_len = ETH + IP4 + first.thl;
    memcpy(g->head, frames[0], head_len);
    uint8_t *ip = g->head + ETH, *tcp = ip + IP4;
    put16(ip + 2, total);
    put16(ip + 10, 0);
    put16(ip + 10, inet_checksum(ip, IP4, 0));
    tcp[13] = last.flags;
    uint32_t sum = pseudo_sum(ip, total - IP4);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    put16(tcp + 16, sum);   /* not complemented: the kernel adds the rest and complements */

    g->vnet[0] = VNET_NEEDS_CSUM;
    g->vnet[1] = VNET_GSO_TCPV4;
    put_le16(g->vnet + 2, head_len);                 /* hdr_len */
    put_le16(g->vnet + 4, first.plen);               /* gso_size */
    put_le16(g->vnet + 6, ETH + IP4);                /* csum_start */
    put_le16(g->vnet + 8, 16);                       /* csum_offset: TCP's checksum */
    g->head_len = head_len;
    g->count = k;
}

/* The iovec of the planned write: the vnet header, then the frame, or the merged head
 * and every frame's payload. Returns the count. */
static int plan_iov(const struct tap_gso *g, const uint8_t *const *frames,
                    const uint32_t *lens, struct iovec *v)
{
    int k = 0;
    v[k++] = (struct iovec){(void *)g->vnet, sizeof g->vnet};
    if (g->count == 1) {
        v[k++] = (struct iovec){(void *)frames[0], lens[0]};
        return k;
    }
    v[k++] = (struct iovec){(void *)g->head, g->head_len};
    for (uint32_t j = 0; j < g->count; j++)
        v[k++] = (struct iovec){(void *)(frames[j] + g->head_len), lens[j] - g->head_len};
    return k;
}

int tap_gso_write(int fd, const uint8_t *const *frames, const uint32_t *lens, uint32_t n,
                  int partial)
{
    struct tap_gso g;
    struct iovec v[TAP_GSO_MAX_RUN + 2];
    tap_gso_plan(frames, lens, n, partial, &g);
    ssize_t r = writev(fd, v, plan_iov(&g, frames, lens, v));
    return r < 0 ? -errno : (int)g.count;
}
