"""Debug events: vde_switch's debug/list, debug/add, debug/del and the `3xxx` lines.

A console session subscribes to categories by path prefix; whatever happens in the
switch (a port appears, an endpoint leaves, a MAC is learned) is announced with
`emit()`, and each subscribed session gets one line
`"3" + <tag, 3 octal digits> + " " + <category> + " " + <message> + "\\n"`
(vde-protocol.md §4.3, §4.5). The formatting functions are pure; hash events come
from the C data plane's event queue and are only produced while someone listens.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass

from .console import Audience, CommandError, Context


@dataclass(frozen=True)
class Category:
    path: str
    tag: int       # shown in octal
    help: str


CATEGORIES = [
    Category("hash/+", 0o11, "hash: new element"),
    Category("hash/-", 0o12, "hash: discarded element"),
    Category("port/+", 0o21, "new port"),
    Category("port/-", 0o22, "closed port"),
    Category("port/descr", 0o23, "set port description"),
    Category("port/ep/+", 0o31, "new endpoint"),
    Category("port/ep/-", 0o32, "closed endpoint"),
]
BY_PATH = {c.path: c for c in CATEGORIES}
HASH_CATEGORIES = {"hash/+", "hash/-"}


def event_line(path: str, message: str) -> bytes:
    return f"3{BY_PATH[path].tag:03o} {path} {message}\n".encode("utf-8", "replace")


# --- the messages, byte for byte as vde_switch 2.3.2 prints them
def port_message(port: int) -> str:
    return f"{port:02d}"


def endpoint_message(port: int, endpoint_id: int) -> str:
    return f"Port {port:02d} FD {endpoint_id:2d}"


def descr_message(port: int, endpoint_id: int, description: str) -> str:
    return f'{endpoint_message(port, endpoint_id)} -> "{description}"'


def hash_message(mac: bytes, vlan: int, port: int) -> str:
    return f"{':'.join(f'{b:02x}' for b in mac)} VLAN {vlan >> 8:02x}:{vlan & 0xff:02x} Port {port}"


class DebugHub(Audience):
    """Who listens to which category: the open console sessions (an Audience), with
    `on_hash_interest(bool)` told when hash events start or stop being wanted, so the data
    plane only queues them while someone listens."""

    def __init__(self, on_hash_interest=None):
        super().__init__()
        self.on_hash_interest = on_hash_interest or (lambda on: None)
        self._hash_wanted = False

    def leave(self, session) -> None:
        super().leave(session)
        self._update()

    def _update(self) -> None:
        wanted = any(s.subscriptions & HASH_CATEGORIES for s in self.sessions)
        if wanted != self._hash_wanted:
            self._hash_wanted = wanted
            self.on_hash_interest(wanted)

    def emit(self, path: str, message: str) -> None:
        if self.wants(path):
            self.publish(path, event_line(path, message))

    # --- commands
    def add(self, session, prefix: str) -> None:
        matched = {c.path for c in CATEGORIES if c.path.startswith(prefix)}
        if not matched:
            raise CommandError(errno.EINVAL, f"no debug category starts with '{prefix}'")
        if matched <= session.subscriptions:
            raise CommandError(errno.EEXIST)
        session.subscriptions |= matched
        self._update()

    def delete(self, session, prefix: str) -> None:
        matched = {c.path for c in CATEGORIES if c.path.startswith(prefix)}
        if not matched:
            raise CommandError(errno.EINVAL, f"no debug category starts with '{prefix}'")
        if not matched & session.subscriptions:
            raise CommandError(errno.ENOENT)
        session.subscriptions -= matched
        self._update()

    @staticmethod
    def list_lines(session, prefix: str) -> list[str]:
        """The header and one row per category starting with prefix (only the header
        when none does: vde_switch prints it before its 1002)."""
        rows = [c for c in CATEGORIES if c.path.startswith(prefix)]
        subscribed = session.subscriptions if session is not None else set()
        return [f"{'CATEGORY':<22} {'TAG':>3} {'STATUS':<6} HELP",
                f"{'------------':<22} --- ------ ----"] + [
            f"{c.path:<22} {c.tag:03o} {'ON' if c.path in subscribed else 'OFF':<6} {c.help}"
            for c in rows]


def register_commands(table, hub: DebugHub) -> None:
    table.menu("debug", "DEBUG MENU")

    def need_session(ctx: Context):
        if ctx.session is None:      # an rc file has no session to subscribe
            raise CommandError(errno.EINVAL, "debug subscriptions need a console session")
        return ctx.session

    @table.command("debug/list", "", "list debug categories", data=True)
    def list_(ctx: Context) -> None:
        ctx.out += hub.list_lines(ctx.session, ctx.arg)
        if len(ctx.out) == 2:                # nothing but the header
            raise CommandError(errno.ENOENT)

    @table.command("debug/add", "dbgpath", "enable debug info for a given category")
    def add(ctx: Context) -> None:
        hub.add(need_session(ctx), ctx.arg)

    @table.command("debug/del", "dbgpath", "disable debug info for a given category")
    def delete(ctx: Context) -> None:
        hub.delete(need_session(ctx), ctx.arg)
