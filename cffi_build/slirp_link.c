/*
 * slirp_link.c — see slirp_link.h.
 */
#define _GNU_SOURCE
#include "slirp_link.h"
#include "tap_gso.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define BATCH 64

static int send_dgram(int fd, const uint8_t *buf, const uint32_t *lens, int n)
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

static int send_tap(int fd, const uint8_t *buf, const uint32_t *lens, int n, int partial)
{
    const uint8_t *frames[BATCH];
    int done = 0;
    size_t off = 0;
    while (done < n) {
        int m = 0;
        size_t o = off;
        for (; m < BATCH && done + m < n; m++) {
            frames[m] = buf + o;
            o += lens[done + m];
        }
        int r = tap_gso_write(fd, frames, lens + done, (uint32_t)m, partial);
        if (r == -EINTR)
            continue;
        if (r == -EAGAIN || r == -EWOULDBLOCK)
            return done;
        /* written, or refused for good (EIO: the interface is down): either way gone
         * (a refused write took the frame it was planned with, at least) */
        int took = r > 0 ? r : 1;
        for (int j = 0; j < took; j++)
            off += lens[done + j];
        done += took;
    }
    return done;
}

int slirp_link_send(int fd, int kind, const uint8_t *buf, const uint32_t *lens, int n,
                    int partial)
{
    return kind == SLIRP_LINK_TAP ? send_tap(fd, buf, lens, n, partial)
                                  : send_dgram(fd, buf, lens, n);
}

int slirp_link_recv(int fd, int kind, uint8_t *slots, size_t slot_size, uint32_t *lens,
                    int max)
{
    if (max > BATCH)
        max = BATCH;
    if (kind == SLIRP_LINK_TAP) {
        uint8_t vnet[TAP_VNET_HDR_LEN];   /* no offload asked for: nothing in it to act on */
        int i = 0;
        while (i < max) {
            struct iovec v[2] = {{vnet, sizeof vnet}, {slots + (size_t)i * slot_size, slot_size}};
            ssize_t r = readv(fd, v, 2);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                if (i > 0 || (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)))
                    break;
                return -1;
            }
            lens[i++] = r > TAP_VNET_HDR_LEN ? (uint32_t)(r - TAP_VNET_HDR_LEN) : 0;
        }
        return i;
    }
    struct mmsghdr m[BATCH];
    struct iovec v[BATCH];
    for (int i = 0; i < max; i++) {
        v[i].iov_base = slots + (size_t)i * slot_size;
        v[i].iov_len = slot_size;
        memset(&m[i], 0, sizeof m[i]);
        m[i].msg_hdr.msg_iov = &v[i];
        m[i].msg_hdr.msg_iovlen = 1;
    }
    int n = recvmmsg(fd, m, (unsigned)max, MSG_DONTWAIT, NULL);
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    for (int i = 0; i < n; i++)
        lens[i] = m[i].msg_len;
    return n;
}
