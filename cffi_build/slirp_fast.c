/*
 * slirp_fast.c — see slirp_fast.h.
 */
#define _GNU_SOURCE
#include "slirp_fast.h"

#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define BATCH 64

uint16_t slirp_checksum(const uint8_t *p, size_t n, uint32_t sum32)
{
    uint64_t sum = sum32;
    while (n >= 8) {                /* big-endian 16-bit words, eight bytes at a time */
        uint64_t w;
        memcpy(&w, p, 8);
        w = __builtin_bswap64(w);
        sum += (w >> 48) + ((w >> 32) & 0xffff) + ((w >> 16) & 0xffff) + (w & 0xffff);
        p += 8;
        n -= 8;
    }
    while (n >= 2) {
        sum += (uint32_t)p[0] << 8 | p[1];
        p += 2;
        n -= 2;
    }
    if (n)
        sum += (uint32_t)p[0] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

int slirp_send_frames(int fd, const uint8_t *buf, const uint32_t *lens, int n)
{
    struct mmsghdr m[BATCH];
    struct iovec v[BATCH];
    int done = 0;
    size_t off = 0;
    while (done < n) {
        int k = 0;
        size_t o = off;
        for (; k < BATCH && done + k < n; k++) {
            v[k].iov_base = (void *)(buf + o);
            v[k].iov_len = lens[done + k];
            o += lens[done + k];
            memset(&m[k], 0, sizeof m[k]);
            m[k].msg_hdr.msg_iov = &v[k];
            m[k].msg_hdr.msg_iovlen = 1;
        }
        int r = sendmmsg(fd, m, (unsigned)k, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r <= 0)
            return done;
        for (int i = 0; i < r; i++)
            off += lens[done + i];
        done += r;
        if (r < k)
            return done;
    }
    return done;
}
