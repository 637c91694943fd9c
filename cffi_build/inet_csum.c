/*
 * inet_csum.c — see inet_csum.h.
 */
#include "inet_csum.h"

#include <string.h>

uint16_t inet_checksum(const uint8_t *p, size_t n, uint32_t sum32)
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
