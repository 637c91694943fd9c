/*
 * tap_gso.h — writing to a tap opened with IFF_VNET_HDR: every frame goes with a
 * virtio_net_hdr, and a run of consecutive segments of one TCP stream goes as one GSO
 * packet (what a NIC's receive offload, GRO, makes of them), so the host's kernel
 * takes the run in one write and its TCP acknowledges it once.
 *
 * A run is merged only when the merge is invisible to the receiver but for its
 * speed: IPv4 without options or fragments, TCP with only ACK (PSH on the last),
 * payloads back to back in sequence, every segment but the last of the same size,
 * identical addresses, ports, ack, window, TOS, TTL, DF and TCP options, and every
 * segment's IPv4 and TCP checksums verified here. Anything else (a bad checksum, a SYN,
 * an IPv6 or VLAN-tagged frame) is written as it came, alone, for the kernel to judge.
 */
#ifndef PYVDE_TAP_GSO_H
#define PYVDE_TAP_GSO_H

#include <stdint.h>

#define TAP_VNET_HDR_LEN 10     /* struct virtio_net_hdr, the tap's default */
#define TAP_GSO_HEAD_MAX 134    /* Ethernet + IPv4 (20) + TCP with options (60) */
#define TAP_GSO_MAX_RUN 64      /* frames looked at for one run */

struct tap_gso {
    uint8_t vnet[TAP_VNET_HDR_LEN];  /* the virtio_net_hdr to write first */
    uint8_t head[TAP_GSO_HEAD_MAX];  /* count > 1: the merged packet's headers */
    uint32_t head_len;               /* count > 1: bytes in head; each frame's payload
                                        then follows from offset head_len */
    uint32_t count;                  /* frames in the run, 1..n */
};

/* Plans the write of frames[0..n) (lens[i] > 0, n >= 1; only the first
 * TAP_GSO_MAX_RUN are looked at) that starts with frames[0]:
 * one frame as it is (count 1, a header with no offload asked), or a run merged into
 * one GSO packet (count > 1).
 * partial: the frames are our own TCP segments whose checksum field holds only the
 * pseudo-header's sum (pyvde-slirp on a tap): nothing is verified, and a frame alone
 * asks the kernel to complete its checksum too (NEEDS_CSUM), as a NIC's offload would. */
void tap_gso_plan(const uint8_t *const *frames, const uint32_t *lens, uint32_t n,
                  int partial, struct tap_gso *g);

/* One write to the tap fd: the run tap_gso_plan() makes of frames[0..n), as one writev.
 * Returns how many frames it took (>= 1), or -errno. */
int tap_gso_write(int fd, const uint8_t *const *frames, const uint32_t *lens, uint32_t n,
                  int partial);

#endif
