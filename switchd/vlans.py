"""802.1Q VLANs: the vlan/* console commands (vde-protocol.md §4.5, §5.5).

Frames are classified, tagged and untagged in C (cffi_build/dataplane.c); this module
keeps the list of defined VLANs, answers the console and keeps the engine's membership
in step with the port table. A port's untagged VLAN is set with port/setvlan (ports.py).
"""
from __future__ import annotations

import errno

from .console import CommandError, Context
from .dataplane import NOVLAN

MAX_VLAN = 4093      # vlan/create accepts 1..4093, as vde_switch does


class Vlans:
    def __init__(self, switch):
        self.switch = switch
        self.defined: set[int] = {0}

    @property
    def dp(self):
        return self.switch.dataplane

    def create(self, vlan: int) -> None:
        if not 1 <= vlan <= MAX_VLAN:
            raise CommandError(errno.EINVAL, f"VLAN ids are 1..{MAX_VLAN}")
        if vlan in self.defined:
            raise CommandError(errno.EEXIST)
        self.dp.vlan_create(vlan)
        self.defined.add(vlan)

    def remove(self, vlan: int) -> None:
        if vlan == 0:
            # vde_switch removes it and then crashes when a port comes up on VLAN 0
            raise CommandError(errno.EINVAL, "VLAN 0 cannot be removed")
        if vlan not in self.defined:
            raise CommandError(errno.ENXIO)
        try:
            self.dp.vlan_remove(vlan)
        except OSError as e:
            raise CommandError(e.errno) from None      # EADDRINUSE: ports are members
        self.defined.discard(vlan)

    def _existing(self, vlan: int, port: int):
        if not 0 <= vlan < NOVLAN or not self.switch.ports.in_range(port):
            raise CommandError(errno.EINVAL)
        p = self.switch.ports.get(port)
        if vlan not in self.defined or p is None:
            raise CommandError(errno.ENXIO)
        return p

    def add_port(self, vlan: int, port: int) -> None:
        self._existing(vlan, port)
        if self.dp.untagged(port) == vlan:
            raise CommandError(errno.EADDRINUSE, "that is the port's untagged VLAN")
        if not self.dp.is_tagged(vlan, port):
            self.dp.add_tagged(vlan, port)

    def del_port(self, vlan: int, port: int) -> None:
        self._existing(vlan, port)
        if self.dp.untagged(port) == vlan:
            raise CommandError(errno.EADDRINUSE, "that is the port's untagged VLAN")
        if not self.dp.is_tagged(vlan, port):
            raise CommandError(errno.ENXIO)
        self.dp.del_tagged(vlan, port)

    def forget_port(self, port: int) -> None:
        """A removed port leaves every VLAN; its slot goes back to untagged VLAN 0."""
        for vlan in self.defined:
            if self.dp.is_tagged(vlan, port):
                self.dp.del_tagged(vlan, port)
        self.dp.set_untagged(port, 0)

    def members(self, vlan: int, active_only: bool) -> list[str]:
        lines = []
        ports = self.switch.ports
        for n in sorted(ports.ports):
            p = ports.ports[n]
            if active_only and not p.active:
                continue
            tagged = self.dp.is_tagged(vlan, n)
            if not tagged and self.dp.untagged(n) != vlan:
                continue
            if not p.active:
                status = "Learning"
            elif self.dp.mirror_destination(n):
                status = "Discarding"      # a mirror port takes no part in forwarding
            else:
                status = "Forwarding"
            lines.append(f" -- Port {n:04d} tagged={int(tagged)} active={int(p.active)}"
                         f" status={status}")
        return lines


def register_commands(table, vlans: Vlans) -> None:
    table.menu("vlan", "VLAN MANAGEMENT MENU")

    def one_vlan(ctx: Context) -> list[int]:
        if not ctx.arg:
            return sorted(vlans.defined)
        v = ctx.int_arg()
        if not 0 <= v < NOVLAN:
            raise CommandError(errno.EINVAL)
        if v not in vlans.defined:
            raise CommandError(errno.ENXIO)
        return [v]

    @table.command("vlan/create", "N", "create the VLAN with tag N")
    def create(ctx: Context) -> None:
        vlans.create(ctx.int_arg())

    @table.command("vlan/remove", "N", "remove the VLAN with tag N")
    def remove(ctx: Context) -> None:
        vlans.remove(ctx.int_arg())

    @table.command("vlan/addport", "N PORT", "add port to the vlan N (tagged)")
    def addport(ctx: Context) -> None:
        vlans.add_port(*ctx.int_args(2))

    @table.command("vlan/delport", "N PORT", "remove port from the vlan N (tagged)")
    def delport(ctx: Context) -> None:
        vlans.del_port(*ctx.int_args(2))

    def print_vlans(ctx: Context, active_only: bool) -> None:
        for v in one_vlan(ctx):
            ctx.out.append(f"VLAN {v:04d}")
            ctx.out += vlans.members(v, active_only)

    table.add("vlan/print", "[N]", "print the list of defined vlan",
              lambda ctx: print_vlans(ctx, True), data=True)
    table.add("vlan/allprint", "[N]", "print the list of defined vlan (including inactive port)",
              lambda ctx: print_vlans(ctx, False), data=True)

    @table.command("vlan/counters", "[N]", "frames and bytes received per VLAN", data=True)
    def counters(ctx: Context) -> None:
        for v in one_vlan(ctx):
            frames, nbytes = vlans.dp.vlan_stats(v)
            ctx.out.append(f"VLAN {v:04d} in {frames} {nbytes}")
