"""The MAC table's console commands (hash/*, vde-protocol.md §4.5, §5.4).

The table itself lives in C (cffi_build/mac_table.c) inside the data plane; this
module only shows and configures it. Times are whole seconds, as vde_switch's are.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass

from .console import CommandError, Context
from .options import parse_mac

DEFAULT_EXPIRE = 100
DEFAULT_MINPERS = 3
DEFAULT_GCINT = 2


@dataclass
class TableTimes:
    expire: int = DEFAULT_EXPIRE
    minpers: int = DEFAULT_MINPERS
    gcint: int = DEFAULT_GCINT


def format_entry(e) -> str:
    mac = ":".join(f"{b:02x}" for b in e.mac)
    return (f"Hash: {e.bucket:04d} Addr: {mac} VLAN {e.vlan:04d} to port: {e.port:03d}"
            f"  age {int(e.age)} secs")


def register_commands(table, switch) -> None:
    dp = switch.dataplane
    times = switch.table_times

    def apply() -> None:
        dp.table_config(times.expire, times.minpers, times.gcint)

    apply()
    table.menu("hash", "HASH TABLE MENU")

    @table.command("hash/showinfo", "", "show hash info", data=True)
    def showinfo(ctx: Context) -> None:
        ctx.out += [f"Hash size {dp.table_buckets}", f"GC interval {times.gcint} secs",
                    f"GC expire {times.expire} secs", f"Min persistence {times.minpers} secs"]

    @table.command("hash/setsize", "N", "change hash size")
    def setsize(ctx: Context) -> None:
        n = ctx.int_arg()
        if not 1 <= n <= 1 << 20:
            raise CommandError(errno.EINVAL)
        try:
            dp.table_resize(n)
        except OSError as e:
            raise CommandError(e.errno) from None

    def setter(name: str):
        def handler(ctx: Context) -> None:
            n = ctx.int_arg()
            if not 0 < n <= 1 << 30:
                raise CommandError(errno.EINVAL)
            setattr(times, name, n)
            apply()
        return handler

    table.add("hash/setgcint", "N", "change garbage collector interval", setter("gcint"))
    table.add("hash/setexpire", "N", "change hash entries expire time", setter("expire"))
    table.add("hash/setminper", "N", "minimum persistence time", setter("minpers"))

    @table.command("hash/print", "", "print the hash table", data=True)
    def print_table(ctx: Context) -> None:
        ctx.out += [format_entry(e) for e in dp.table_entries()]

    @table.command("hash/find", "MAC [VLAN]", "MAC lookup", data=True)
    def find(ctx: Context) -> None:
        words = ctx.arg.split()
        if not 1 <= len(words) <= 2:
            raise CommandError(errno.EINVAL)
        try:
            mac = parse_mac(words[0])
            vlan = int(words[1]) if len(words) == 2 else 0
        except ValueError:
            raise CommandError(errno.EINVAL) from None
        if not 0 <= vlan < 4095:
            raise CommandError(errno.EINVAL)
        e = dp.table_find(mac, vlan)
        if e is None:
            raise CommandError(errno.ENODEV)
        ctx.out.append(format_entry(e))
