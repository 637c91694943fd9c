"""Where the guest's DNS queries go: the host's resolvers from /etc/resolv.conf.

The guest asks the DNS address (.3) on port 53; udp.py sends such a query to the first
IPv4 `nameserver` of the host's resolv.conf, as libslirp does. Loopback resolvers
(127.0.0.53 systemd-resolved, 127.0.0.1 dnsmasq) work as they are: the router runs in the
host's network namespace.

resolv.conf is read the way glibc reads it (resolv/res_init.c): a `nameserver` keyword at
the start of a line, then blanks, then the address, which ends at a blank, `#` or `;`.
Other keywords (`search`, `options`, ...) and comment lines are ignored. Unlike glibc,
IPv6 nameservers do not count towards the three kept: the router forwards IPv4 only, so
an IPv4 resolver after three IPv6 ones is still worth using.

`Resolvers` re-reads the file when it changes (resolv.conf is often replaced by a new file,
a symlink target changing, so the path is stat()ed, never an open descriptor), but at most
once per `recheck` seconds, like libslirp's get_dns_addr_cached (1 s).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from ipaddress import AddressValueError, IPv4Address

MAX_NAMESERVERS = 3           # glibc's MAXNS
GLIBC_DEFAULT = IPv4Address("127.0.0.1")   # what glibc uses when there is no nameserver


def parse_resolv_conf(text: str) -> list[IPv4Address]:
    """The IPv4 nameservers of a resolv.conf, in order, at most 3."""
    found: list[IPv4Address] = []
    for line in text.splitlines():
        if not line.startswith("nameserver") or line[10:11] not in (" ", "\t"):
            continue
        rest = line[11:].lstrip(" \t")
        end = len(rest)
        for stop in " \t#;":
            i = rest.find(stop)
            if i != -1:
                end = min(end, i)
        try:
            found.append(IPv4Address(rest[:end]))
        except AddressValueError:
            continue          # IPv6 (with or without %scope) or garbage
        if len(found) == MAX_NAMESERVERS:
            break
    return found


def stat_key(path: str) -> Hashable:
    """What tells that the file changed: (st_dev, st_ino, st_size, st_mtime_ns)."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def read_text(path: str) -> tuple[Hashable, str]:
    """The default `read` of Resolvers: the file's stat key and its text."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        data = f.read(1 << 16)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    return key, data.decode("utf-8", "replace")


class Resolvers:
    """The host's current IPv4 resolvers, re-read from `path` when it changes.

    `read(path) -> (stat_key, text)` is the only I/O; it raises OSError when the file
    cannot be read. `stat(path) -> stat_key` lets the check for a change skip reading the
    file; with the defaults (read=None) both are os.stat/open based. With an injected
    `read` and no `stat`, `read` is called once per `recheck` seconds and the text is parsed
    again only when the key it returns changed.

    No nameserver, or no readable file: `fallback`, 127.0.0.1 by default as in glibc; with
    fallback=None, current() returns None then and udp.py refuses the query.
    """

    def __init__(self, path: str = "/etc/resolv.conf", recheck: float = 1.0,
                 read: Callable[[str], tuple[Hashable, str]] | None = None,
                 stat: Callable[[str], Hashable] | None = None,
                 fallback: IPv4Address | None = GLIBC_DEFAULT):
        self.path = path
        self.recheck = recheck
        self._read = read if read is not None else read_text
        self._stat = stat if stat is not None else (stat_key if read is None else None)
        self.fallback = fallback
        self._key: Hashable = None
        self._checked: float | None = None
        self._servers: list[IPv4Address] = []
        self.counters = {"resolv_reads": 0, "resolv_errors": 0}

    def current(self, now: float) -> IPv4Address | None:
        """The first nameserver (or the fallback) as of `now`."""
        servers = self.all(now)
        return servers[0] if servers else self.fallback

    def all(self, now: float) -> list[IPv4Address]:
        """All the IPv4 nameservers (at most 3) as of `now`; [] when there is none."""
        if self._checked is None or now - self._checked >= self.recheck:
            self._checked = now
            self._refresh()
        return list(self._servers)

    def _refresh(self) -> None:
        try:
            if self._stat is not None and self._key is not None \
                    and self._stat(self.path) == self._key:
                return
            key, text = self._read(self.path)
        except OSError:
            self.counters["resolv_errors"] += 1
            self._key = None      # read it again as soon as it is back
            self._servers = []
            return
        if key is not None and key == self._key:
            return
        self.counters["resolv_reads"] += 1
        self._key = key
        self._servers = parse_resolv_conf(text)
