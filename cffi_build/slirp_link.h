/*
 * slirp_link.h — how pyvde-slirp's frames cross its link to the virtual network: one
 * frame per datagram on a switch's data socket, or one per read()/write() on a tap
 * opened with IFF_VNET_HDR (-s tap://NAME), where a run of TCP segments to one guest is
 * written as one GSO packet (tap_gso.h).
 */
#ifndef PYVDE_SLIRP_LINK_H
#define PYVDE_SLIRP_LINK_H

#include <stddef.h>
#include <stdint.h>

#define SLIRP_LINK_DGRAM 0
#define SLIRP_LINK_TAP 1

/* Sends n frames, laid end to end in buf with their lengths in lens, without blocking:
 * sendmmsg on a datagram socket; on a tap, runs merged by tap_gso_plan(), a frame the
 * tap refuses (interface down) being dropped. partial (taps only): every frame is a TCP
 * segment of slirp_tcp_headers(..., partial). Returns how many frames left (or were
 * dropped); the others could not go now (the switch or tap is full). */
int slirp_link_send(int fd, int kind, const uint8_t *buf, const uint32_t *lens, int n,
                    int partial);

/* Receives up to max frames without blocking into slots of slot_size bytes (frame i at
 * slots + i * slot_size), their lengths into lens. Returns how many (0: none now), or -1
 * if the link is gone or failed (errno tells). Zero-length datagrams count, with length
 * 0; a tap frame longer than a slot is cut (it cannot be: slots hold the largest). */
int slirp_link_recv(int fd, int kind, uint8_t *slots, size_t slot_size, uint32_t *lens,
                    int max);

#endif
