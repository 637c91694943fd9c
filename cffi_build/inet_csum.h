/*
 * inet_csum.h — the Internet checksum (RFC 1071), shared by pyvde-slirp's packet code
 * and the plugs' tap writer.
 */
#ifndef PYVDE_INET_CSUM_H
#define PYVDE_INET_CSUM_H

#include <stddef.h>
#include <stdint.h>

/* The checksum of n bytes, continuing from a partial 32-bit sum (0 to start; a
 * pseudo-header's sum for TCP/UDP). Returns the 16-bit complement: 0 when verifying
 * data that holds a correct checksum. */
uint16_t inet_checksum(const uint8_t *p, size_t n, uint32_t sum);

#endif
