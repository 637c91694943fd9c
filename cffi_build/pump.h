/*
 * pump.h — the frame pump of pyvde's plugs: moves Ethernet frames both ways between two
 * ends (a switch's data socket, a tap device, a length-prefixed byte stream, a UDP or
 * ptp socket, or nothing) until one of them ends. See pump.c for the theory.
 * Functions returning int return >= 0 on success and -errno on failure.
 */
#ifndef PYVDE_PUMP_H
#define PYVDE_PUMP_H

#include <stdint.h>

/* How frames cross an end. */
#define PUMP_DGRAM 0    /* one frame per datagram (VDE data socket, udp://, ptp://) */
#define PUMP_TAP 1      /* one frame per read()/write() (tap://, /dev/net/tun) */
#define PUMP_STREAM 2   /* 2-byte big-endian length + frame records (stdin/stdout, dpipe, ssh) */
#define PUMP_NULL 3     /* swallows everything, yields nothing (null://) */

/* Why pump_run() returned. */
#define PUMP_END_A 1        /* end a reached end of file or hang-up */
#define PUMP_END_B 2        /* end b reached end of file or hang-up */
#define PUMP_WATCHED 3      /* a watched fd became readable or hung up (a switch let go) */
#define PUMP_STOPPED 4      /* the stop fd became readable (a signal) */
#define PUMP_BAD_STREAM 5   /* a stream record had an impossible length; see pump_stats.bad_len */

#define PUMP_MAX_FRAME 65550
#define PUMP_MAX_WATCH 4

struct pump_end {
    int kind;               /* PUMP_* */
    int rfd, wfd;           /* the same fd for sockets and taps; stdin/stdout for a stream */
    int watch[PUMP_MAX_WATCH];   /* fds whose readability or hang-up ends the pump, -1 unused */
    uint8_t peer[110];      /* PUMP_DGRAM: if peer_len > 0, send to this address (unconnected) */
    uint32_t peer_len;
    int vnet;               /* PUMP_TAP: opened with IFF_VNET_HDR; frames carry a
                               virtio_net_hdr and runs of TCP segments are written as one
                               GSO packet (tap_gso.h) */
};

struct pump_dir_stats {
    uint64_t frames, bytes;     /* delivered to the destination end */
    uint64_t runts;             /* shorter than 14 bytes: dropped */
    uint64_t oversize;          /* longer than maxframe: dropped */
    uint64_t send_errors;       /* refused by the destination (peer gone, interface down...) */
    uint64_t merged;            /* delivered to a vnet tap as part of a merged TCP run */
};

struct pump_stats {
    struct pump_dir_stats a_to_b, b_to_a;
    uint32_t bad_len;           /* PUMP_BAD_STREAM: the impossible length */
    int32_t bad_end;            /* PUMP_BAD_STREAM: 0 for end a, 1 for end b */
};

/* A pump keeps its buffers between runs, so a run that ends (a switch went away) and
 * the next one (reconnected) lose nothing: a record half read from a stream, or frames
 * read but not yet written, carry over. maxframe: the largest frame (14..PUMP_MAX_FRAME). */
struct pump;
struct pump *pump_new(int maxframe);
void pump_free(struct pump *p);

/* Runs until an end closes, a watched fd fires, the stop fd is readable or an error.
 * Frames already read are written out before an end-of-file return. The ends may
 * differ from the previous run's (a new switch connection). Returns PUMP_* or -errno.
 * Blocking: call it with the GIL released (cffi does). */
int pump_run(struct pump *p, struct pump_end *a, struct pump_end *b, int stop_fd,
             struct pump_stats *stats);

#endif
