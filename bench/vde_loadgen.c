/*
 * vde_loadgen — a VDE load generator for pyvde's benchmarks (not part of the package).
 *
 * Connects through libvdeplug like any VDE client, then moves frames on the data fd
 * with sendmmsg/recvmmsg so that the client is not the bottleneck.
 *
 *   vde_loadgen send VNL --size N --start T0 --duration D [--dst MAC] [--src MAC]
 *       blocking batched sends from now until T0+D+0.5 (broadcast unless --dst)
 *   vde_loadgen recv VNL --count K --start T0 --duration D [--mac MAC]
 *       K connections (MACs MAC, MAC+1, ...); each says hello once so the switch learns
 *       it, then frames received between T0 and T0+D are counted
 *   vde_loadgen mesh VNL --count K --size N --start T0 --duration D
 *   --vlan VID (send, recv): frames carry an 802.1Q tag for VID (the frame size is
 *       unchanged: the tag takes 4 bytes of the payload)
 *       K connections in one process, each sending unicast to all the others in turn;
 *       frames received between T0 and T0+D are counted
 *
 * T0 is a CLOCK_REALTIME time in seconds (the harness starts every process first).
 * Prints one line: "frames=F bytes=B seconds=S rate=F/S".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libvdeplug.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAXK 64
#define BUFSZ 65600

static int vlan = -1;   /* --vlan: tag sent frames */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *msg)
{
    perror(msg);
    exit(1);
}

static void parse_mac(const char *s, uint8_t *mac)
{
    unsigned v[6];
    if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) {
        fprintf(stderr, "bad MAC %s\n", s);
        exit(2);
    }
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)v[i];
}

static void mac_plus(const uint8_t *base, int i, uint8_t *out)
{
    memcpy(out, base, 6);
    out[5] = (uint8_t)(base[5] + i);
}

static void make_frame(uint8_t *f, unsigned size, const uint8_t *dst, const uint8_t *src)
{
    memset(f, 0, size);
    memcpy(f, dst, 6);
    memcpy(f + 6, src, 6);
    unsigned off = 12;
    if (vlan >= 0) {
        f[12] = 0x81;
        f[13] = 0x00;
        f[14] = (uint8_t)(vlan >> 8);
        f[15] = (uint8_t)vlan;
        off = 16;
    }
    f[off] = 0x88;   /* local experimental EtherType */
    f[off + 1] = 0xb5;
}

static VDECONN *open_vde(const char *vnl)
{
    struct vde_open_args args = {0, NULL, 0700};
    VDECONN *c = vde_open((char *)vnl, "vde_loadgen", &args);
    if (!c)
        die("vde_open");
    return c;
}

static void report(uint64_t frames, uint64_t bytes, double secs)
{
    printf("frames=%llu bytes=%llu seconds=%.3f rate=%.0f\n", (unsigned long long)frames,
           (unsigned long long)bytes, secs, frames / secs);
}

static int cmd_send(const char *vnl, unsigned size, double t0, double dur, const uint8_t *dst,
                    const uint8_t *src)
{
    VDECONN *c = open_vde(vnl);
    int fd = vde_datafd(c);
    static uint8_t frame[BUFSZ];
    make_frame(frame, size, dst, src);
    struct mmsghdr msgs[BATCH];
    struct iovec iov = {frame, size};
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    uint64_t sent = 0, in_window = 0;
    double end = t0 + dur + 0.5;
    for (;;) {
        double t = now();
        if (t > end)
            break;
        int r = sendmmsg(fd, msgs, BATCH, 0);
        if (r < 0) {
            if (errno == EINTR || errno == ENOBUFS || errno == EAGAIN)
                continue;
            die("sendmmsg");
        }
        sent += r;
        if (t >= t0 && t <= t0 + dur)
            in_window += r;
    }
    report(in_window, in_window * size, dur);
    vde_close(c);
    return 0;
}

static int cmd_recv(const char *vnl, int k, double t0, double dur, const uint8_t *base,
                    unsigned size, int mesh)
{
    VDECONN *c[MAXK];
    struct pollfd pfd[MAXK];
    uint8_t mac[MAXK][6];
    static uint8_t rxbuf[BATCH][BUFSZ];
    static uint8_t txframe[MAXK][MAXK][BUFSZ > 1600 ? 1600 : BUFSZ];
    static uint8_t bigtx[BUFSZ];
    struct mmsghdr rx[BATCH], tx[BATCH];
    struct iovec rxiov[BATCH], txiov[BATCH];
    int next_dst[MAXK];

    if (k < (mesh ? 2 : 1) || k > MAXK) {
        fprintf(stderr, "--count must be 1..%d\n", MAXK);
        return 2;
    }
    for (int i = 0; i < k; i++) {
        c[i] = open_vde(vnl);
        pfd[i].fd = vde_datafd(c[i]);
        pfd[i].events = POLLIN | (mesh ? POLLOUT : 0);
        mac_plus(base, i, mac[i]);
        next_dst[i] = 0;
    }
    usleep(200000);
    /* hello: a broadcast from every MAC so the switch learns where each one is */
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    for (int i = 0; i < k; i++) {
        uint8_t hello[60];
        make_frame(hello, sizeof hello, bcast, mac[i]);
        /* retried: a ptp:// peer may not be there yet */
        for (int tries = 0; vde_send(c[i], hello, sizeof hello, 0) < 0; tries++) {
            if (tries == 300)
                die("hello");
            usleep(10000);
        }
    }
    unsigned tsize = size > 1600 ? 1600 : size;
    if (mesh) {
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++)
                make_frame(txframe[i][j], tsize, mac[j], mac[i]);
    }
    (void)bigtx;
    for (int i = 0; i < BATCH; i++) {
        rxiov[i].iov_base = rxbuf[i];
        rxiov[i].iov_len = BUFSZ;
        memset(&rx[i], 0, sizeof rx[i]);
        rx[i].msg_hdr.msg_iov = &rxiov[i];
        rx[i].msg_hdr.msg_iovlen = 1;
    }
    uint64_t frames = 0, bytes = 0;
    double end = t0 + dur + (mesh ? 0.5 : 0.2);
    for (;;) {
        int n = poll(pfd, k, 100);
        double t = now();
        if (t > end)
            break;
        if (n <= 0)
            continue;
        for (int i = 0; i < k; i++) {
            if (pfd[i].revents & POLLIN) {
                int r = recvmmsg(pfd[i].fd, rx, BATCH, MSG_DONTWAIT, NULL);
                if (r > 0 && t >= t0 && t <= t0 + dur) {
                    frames += r;
                    for (int m = 0; m < r; m++)
                        bytes += rx[m].msg_len;
                }
            }
            if (mesh && (pfd[i].revents & POLLOUT)) {
                int nb = 0;
                for (; nb < 32; nb++) {
                    /* every other endpoint in turn */
                    int j = (i + 1 + next_dst[i]++ % (k - 1)) % k;
                    txiov[nb].iov_base = txframe[i][j];
                    txiov[nb].iov_len = tsize;
                    memset(&tx[nb], 0, sizeof tx[nb]);
                    tx[nb].msg_hdr.msg_iov = &txiov[nb];
                    tx[nb].msg_hdr.msg_iovlen = 1;
                }
                sendmmsg(pfd[i].fd, tx, nb, MSG_DONTWAIT);
            }
        }
    }
    report(frames, bytes, dur);
    for (int i = 0; i < k; i++)
        vde_close(c[i]);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: vde_loadgen send|recv|mesh VNL [options]\n");
        return 2;
    }
    const char *mode = argv[1], *vnl = argv[2];
    unsigned size = 64;
    int count = 1;
    double t0 = now() + 1, dur = 3;
    uint8_t dst[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    uint8_t src[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
    uint8_t base[6] = {0x02, 0x00, 0x00, 0x00, 0x01, 0x00};
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--size"))
            size = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--count"))
            count = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--start"))
            t0 = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--duration"))
            dur = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--dst"))
            parse_mac(argv[i + 1], dst);
        else if (!strcmp(argv[i], "--src"))
            parse_mac(argv[i + 1], src);
        else if (!strcmp(argv[i], "--vlan"))
            vlan = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--mac"))
            parse_mac(argv[i + 1], base);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (size < 14 || size > BUFSZ) {
        fprintf(stderr, "--size must be 14..%d\n", BUFSZ);
        return 2;
    }
    if (!strcmp(mode, "send"))
        return cmd_send(vnl, size, t0, dur, dst, src);
    if (!strcmp(mode, "recv"))
        return cmd_recv(vnl, count, t0, dur, base, size, 0);
    if (!strcmp(mode, "mesh"))
        return cmd_recv(vnl, count, t0, dur, base, size, 1);
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
