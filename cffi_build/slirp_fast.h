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

/* Sends n frames, laid end to end in buf with their lengths in lens, on the connected
 * datagram socket fd with as few sendmmsg calls as it takes (non-blocking). Returns how
 * many were sent; the others could not be sent now (the switch is full) or failed. */
int slirp_send_frames(int fd, const uint8_t *buf, const uint32_t *lens, int n);

#endif
