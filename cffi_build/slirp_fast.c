/*
 * slirp_fast.c — see slirp_fast.h.
 */
#define _GNU_SOURCE
#include "slirp_fast.h"
#include "inet_csum.h"

#include <string.h>

uint16_t slirp_checksum(const uint8_t *p, size_t n, uint32_t sum)
{
    return inet_checksum(p, n, sum);
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

void slirp_tcp_headers(uint8_t *f, const uint8_t *dst_mac, const uint8_t *src_mac,
                       const uint8_t *src4, const uint8_t *dst4, uint16_t sport,
                       uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags,
                       uint16_t window, uint32_t n, int partial)
{
    uint8_t *ip = f + 14, *tcp = ip + 20;
    memcpy(f, dst_mac, 6);
    memcpy(f + 6, src_mac, 6);
    f[12] = 0x08;
    f[13] = 0x00;
    ip[0] = 0x45;
    ip[1] = 0;
    put16(ip + 2, (uint16_t)(40 + n));
    put16(ip + 4, 0);
    put16(ip + 6, 0x4000);
    ip[8] = 64;
    ip[9] = 6;
    put16(ip + 10, 0);
    memcpy(ip + 12, src4, 4);
    memcpy(ip + 16, dst4, 4);
    put16(ip + 10, slirp_checksum(ip, 20, 0));
    put16(tcp, sport);
    put16(tcp + 2, dport);
    put32(tcp + 4, seq);
    put32(tcp + 8, ack);
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    put16(tcp + 14, window);
    put16(tcp + 16, 0);
    put16(tcp + 18, 0);
    /* the pseudo-header: addresses, protocol, TCP length */
    uint32_t pseudo = ((uint32_t)src4[0] << 8 | src4[1]) + ((uint32_t)src4[2] << 8 | src4[3])
                      + ((uint32_t)dst4[0] << 8 | dst4[1]) + ((uint32_t)dst4[2] << 8 | dst4[3])
                      + 6 + 20 + n;
    if (partial) {
        while (pseudo >> 16)
            pseudo = (pseudo & 0xffff) + (pseudo >> 16);
        put16(tcp + 16, (uint16_t)pseudo);
    } else {
        put16(tcp + 16, slirp_checksum(tcp, 20 + n, pseudo));
    }
}

void slirp_tcp_complete(uint8_t *f, uint32_t len)
{
    const uint8_t *ip = f + 14;
    uint8_t *tcp = f + 34;
    uint32_t pseudo = ((uint32_t)ip[12] << 8 | ip[13]) + ((uint32_t)ip[14] << 8 | ip[15])
                      + ((uint32_t)ip[16] << 8 | ip[17]) + ((uint32_t)ip[18] << 8 | ip[19])
                      + 6 + (len - 34);
    put16(tcp + 16, 0);
    put16(tcp + 16, slirp_checksum(tcp, len - 34, pseudo));
}

int slirp_build_tcp_run(const uint8_t *eth14, const uint8_t *src4, const uint8_t *dst4,
                        uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
                        uint16_t window, const uint8_t *payload, uint32_t len, uint32_t mss,
                        int fin, uint8_t *out, size_t outlen, uint32_t *lens, int maxn)
{
    if (mss == 0)
        return -1;
    uint32_t nseg = len ? (len + mss - 1) / mss : 1;
    if ((int)nseg > maxn || outlen < (size_t)nseg * 54 + len)
        return -1;
    uint32_t pos = 0;
    for (uint32_t i = 0; i < nseg; i++) {
        uint32_t n = len - pos < mss ? len - pos : mss;
        int last = i + 1 == nseg;
        memcpy(out + 54, payload + pos, n);
        slirp_tcp_headers(out, eth14, eth14 + 6, src4, dst4, sport, dport, seq + pos, ack,
                          (uint8_t)(0x10 | (last ? 0x08 | (fin ? 0x01 : 0) : 0)), window, n,
                          0);
        lens[i] = 54 + n;
        out += 54 + n;
        pos += n;
    }
    return (int)nseg;
}
