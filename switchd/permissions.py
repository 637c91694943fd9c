"""Modes and owners of the files the switch makes (vde-protocol.md §1.10).

Pure rules, computed once from the options; the control socket and console apply them.
vde_switch's rules are kept so existing group/mode set-ups keep working:
  * directory: --dirmode, else derived from --mode (02000 plus, for each of user,
    group and other, the class's r/w bits and x if it has any), else 02700;
  * ctl socket: --mode, else --dirmode & 0666, else 0600;
  * data sockets: as ctl; a root switch hands a user's data socket to that user
    (mode & 0700) so the client's own chmod works;
  * port 0's data socket and the management socket: --mgmtmode/--mgmtgroup.
"""
from __future__ import annotations

import grp
from dataclasses import dataclass


class GroupError(ValueError):
    pass


def group_id(name: str | None) -> int:
    """A group name or number as a gid; -1 for none."""
    if name is None:
        return -1
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        pass
    if name.isdigit():
        return int(name)
    raise GroupError(f"group '{name}' does not exist")


def derived_dir_mode(mode: int) -> int:
    out = 0o2000
    for shift in (6, 3, 0):
        cls = (mode >> shift) & 0o7
        if cls & 0o6:
            out |= ((cls & 0o6) | 0o1) << shift
    return out


@dataclass(frozen=True)
class Permissions:
    dir_mode: int
    sock_mode: int       # ctl and data sockets
    gid: int             # -1: leave the group alone
    mgmt_mode: int
    mgmt_gid: int

    @classmethod
    def from_options(cls, mode: int | None, dirmode: int | None, group: str | None,
                     mgmtmode: int, mgmtgroup: str | None) -> Permissions:
        if dirmode is not None:
            dir_mode = dirmode
        elif mode is not None:
            dir_mode = derived_dir_mode(mode)
        else:
            dir_mode = 0o2700
        if mode is not None:
            sock_mode = mode
        elif dirmode is not None:
            sock_mode = dirmode & 0o666
        else:
            sock_mode = 0o600
        return cls(dir_mode, sock_mode, group_id(group), mgmtmode, group_id(mgmtgroup))

    def data_socket(self, switch_euid: int, client_uid: int, port0: bool) -> tuple[int, int, int]:
        """(mode, uid, gid) for a data socket; uid/gid -1 mean unchanged."""
        if port0:
            return self.mgmt_mode, -1, self.mgmt_gid
        if switch_euid == 0 and client_uid not in (0, -1):
            return self.sock_mode & 0o700, client_uid, self.gid
        return self.sock_mode, -1, self.gid
