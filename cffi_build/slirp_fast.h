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

#endif
