/*
 * slirp_fast.h — the per-packet arithmetic of pyvde-slirp that Python is slow at.
 */
#ifndef PYVDE_SLIRP_FAST_H
#define PYVDE_SLIRP_FAST_H

#include <stddef.h>
#include <stdint.h>

/* The Internet checksum (RFC 1071) of n bytes, continuing from a partial 32-bit sum
 * (0 to start; a pseudo-header's sum for TCP/UDP). Returns the 16-bit complement. */
uint16_t slirp_checksum(const uint8_t *p, size_t n, uint32_t sum);

/* Writes the Ethernet, IPv4 and TCP headers (no options; IPv4 as below) of a segment
 * whose n payload bytes are already at f + 54, checksums included; with partial, the TCP
 * checksum only as far as the pseudo-header (a tap is told to complete it: tap_gso.h). */
void slirp_tcp_headers(uint8_t *f, const uint8_t *dst_mac, const uint8_t *src_mac,
                       const uint8_t *src4, const uint8_t *dst4, uint16_t sport,
                       uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags,
                       uint16_t window, uint32_t n, int partial);

/* Completes the TCP checksum of a frame of len bytes made by slirp_tcp_headers with
 * partial (for a frame that will not go to a tap after all). */
void slirp_tcp_complete(uint8_t *f, uint32_t len);

/* Builds the Ethernet frames of a run of TCP data segments without options: payload cut
 * at mss from seq on, each with ack and window, ACK on all, PSH (and FIN if fin) on the
 * last; IPv4 with ttl 64, id 0, DF, as packets.build_ipv4/build_tcp make them. eth14 is
 * the Ethernet header, src4/dst4 the IPv4 addresses (network order). The frames go end to
 * end into out (outlen bytes), their lengths into lens (maxn). Returns the number of
 * frames, or -1 if out or lens is too small. */

int slirp_build_tcp_run(const uint8_t *eth14, const uint8_t *src4, const uint8_t *dst4,
                        uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
                        uint16_t window, const uint8_t *payload, uint32_t len, uint32_t mss,
                        int fin, uint8_t *out, size_t outlen, uint32_t *lens, int maxn);

#endif
