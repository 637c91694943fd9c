"""The client side of vde_switch's management console, without I/O.

Two parts, both pure:

* framing: `parse_banner` and `parse_reply` cut the byte stream a console server sends
  into a banner, and into one reply per command: the lines of its optional data block
  (`0000 DATA END WITH '.'` ... `.`), its status line (`1000 Success` or
  `1<errno> <strerror>`) and the prompt that ends it. Asynchronous debug events
  (`3NNN ...` lines) are dropped wherever they appear; `9999 END OF SESSION` ends it.
* parsers: the data lines of port/print, hash/print, vlan/print, showinfo,
  port/showinfo and hash/showinfo turned into lists and dicts for JSON. A line they do
  not recognise raises ParseError (and nothing else) naming that line.

pyvde-switch and Debian's vde_switch print the same formats, so both are understood.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

DATA_HEADER = "0000 DATA END WITH '.'"
DATA_END = "."
END_OF_SESSION = "9999"

_EVENT = re.compile(r"3[0-9]{3}(?: |$)")
_STATUS = re.compile(r"1([0-9]{3})(?: (.*))?$", re.DOTALL)


class ParseError(ValueError):
    """Text that is not in the expected console format."""


# ------------------------------------------------------------------ framing

@dataclass
class Reply:
    """One command's reply. `code` is the errno of the status line (0 for `1000 Success`);
    `data` is the data block (None when there was none); `output` is every line that was
    not framing or an event, in order (the data block's lines included), which is what
    `load` prints before its status line; `ended` is True for `9999 END OF SESSION`."""
    code: int = 0
    text: str = "Success"
    data: list[str] | None = None
    output: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    ended: bool = False

    @property
    def ok(self) -> bool:
        return self.code == 0


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def is_event(line: str) -> bool:
    """An asynchronous debug event line, like `3021 port/+ 01`."""
    return _EVENT.match(line) is not None


def parse_banner(buf: bytes) -> tuple[list[str], str] | None:
    """(banner lines, prompt) once the banner ends with a prompt ("$ " after the last
    newline, e.g. "vde$ "), else None: more data is needed."""
    nl = buf.rfind(b"\n")
    prompt = buf[nl + 1:]
    if not prompt.endswith(b"$ "):
        return None
    lines = _decode(buf[:nl]).split("\n") if nl >= 0 else []
    while lines and lines[-1] == "":
        lines.pop()
    return lines, _decode(prompt)


def parse_reply(buf: bytes, prompt: str = "vde$ ", eof: bool = False) -> tuple[Reply, bytes] | None:
    """Cuts the first complete reply out of `buf`: returns (reply, the bytes after its
    prompt), or None when more data is needed.

    A reply is complete at a status line followed by an empty line and the prompt. Status
    lines followed by anything else (the transcript `load` prints) are ordinary output.
    With `eof` (the server closed the connection) a reply that is still incomplete is
    either `9999 END OF SESSION` (a reply with ended=True) or raises EOFError.
    """
    end_marker = ("\n" + prompt).encode()
    reply = Reply()
    in_data = False
    status: str | None = None      # the candidate status line
    pos = 0
    while True:
        if status is not None and not in_data:
            if buf.startswith(end_marker, pos):
                m = _STATUS.match(status)
                reply.code = int(m.group(1))
                reply.text = m.group(2) or ""
                return reply, buf[pos + len(end_marker):]
            if end_marker.startswith(buf[pos:]):
                break                              # the prompt may be on its way
        nl = buf.find(b"\n", pos)
        if nl < 0:
            break
        line = _decode(buf[pos:nl])
        pos = nl + 1
        if is_event(line):
            reply.events.append(line)
            continue
        if status is not None:                     # not the last status after all
            reply.output.append(status)
            status = None
        if in_data:
            if line == DATA_END:
                in_data = False
            else:
                reply.data.append(line)
                reply.output.append(line)
        elif line == DATA_HEADER:
            in_data = True
            reply.data = [] if reply.data is None else reply.data
        elif _STATUS.match(line):
            status = line
        elif line.startswith(END_OF_SESSION):
            reply.ended = True
            return reply, buf[pos:]
        else:
            reply.output.append(line)
    rest = _decode(buf[pos:])
    if rest.startswith(END_OF_SESSION):            # vde_switch sends it without a newline
        if status is not None:
            reply.output.append(status)
        reply.ended = True
        return reply, b""
    if eof:
        raise EOFError("the server closed the connection in the middle of a reply")
    return None


# ------------------------------------------------------------------ data parsers

def _match(pattern: re.Pattern, line: str, what: str) -> re.Match:
    m = pattern.fullmatch(line)
    if m is None:
        raise ParseError(f"not a {what} line: {line!r}")
    return m


def _name(text: str) -> str | None:
    return None if text == "NONE" else text


_PORT = re.compile(r"Port ([0-9]+) untagged_vlan=([0-9]+) (IN)?ACTIVE - (NOT )?Unnamed Allocatable",
                   re.ASCII)
_USER = re.compile(r" Current User: (\S+) Access Control: \(User: (\S+) - Group: (\S+)\)", re.ASCII)
_COUNT = re.compile(r" (IN|OUT): +pkts *([0-9]+) +bytes *([0-9]+)", re.ASCII)
_ENDPOINT = re.compile(r"  -- endpoint ID ([0-9]+) module (.*?) *:(?: (.*))?", re.ASCII | re.DOTALL)


def parse_ports(lines: list[str]) -> list[dict]:
    """port/print and port/allprint."""
    ports: list[dict] = []
    cur: dict = {}
    expect = "port"            # what the next line must be: port, user, IN, OUT, endpoint
    for line in lines:
        if expect == "user":
            m = _match(_USER, line, "port user")
            cur.update(user=_name(m[1]), acl_user=_name(m[2]), acl_group=_name(m[3]))
            expect = "IN"
        elif expect in ("IN", "OUT"):
            m = _match(_COUNT, line, f"port {expect} counter")
            if m[1] != expect:
                raise ParseError(f"not a port {expect} counter line: {line!r}")
            cur[expect.lower()] = {"frames": int(m[2]), "bytes": int(m[3])}
            expect = "OUT" if expect == "IN" else "endpoint"
        elif expect == "endpoint" and line.startswith("  -- "):
            m = _match(_ENDPOINT, line, "port endpoint")
            cur["endpoints"].append({"id": int(m[1]), "module": m[2],
                                     "description": m[3] or ""})
        else:
            m = _match(_PORT, line, "port")
            cur = {"port": int(m[1]), "untagged_vlan": int(m[2]), "active": m[3] is None,
                   "allocatable": m[4] is None, "user": None, "acl_user": None,
                   "acl_group": None, "in": None, "out": None, "endpoints": []}
            ports.append(cur)
            expect = "user"
    if expect not in ("port", "endpoint"):
        raise ParseError(f"port/print output ends before its {expect} line")
    return ports


_HASH = re.compile(r"Hash: ([0-9]+) Addr: ([0-9a-f]{2}(?::[0-9a-f]{2}){5}) VLAN ([0-9]+)"
                   r" to port: ([0-9]+) +age (-?[0-9]+) secs", re.ASCII)


def parse_hash(lines: list[str]) -> list[dict]:
    """hash/print and hash/find."""
    out = []
    for line in lines:
        m = _match(_HASH, line, "hash")
        out.append({"bucket": int(m[1]), "mac": m[2], "vlan": int(m[3]), "port": int(m[4]),
                    "age": int(m[5])})
    return out


_VLAN = re.compile(r"VLAN ([0-9]+)", re.ASCII)
_VLAN_PORT = re.compile(r" -- Port ([0-9]+) tagged=([0-9]+) active=([0-9]+) status=(.*)",
                        re.ASCII | re.DOTALL)


def parse_vlans(lines: list[str]) -> list[dict]:
    """vlan/print and vlan/allprint."""
    vlans: list[dict] = []
    for line in lines:
        if line.startswith(" -- ") and vlans:
            m = _match(_VLAN_PORT, line, "vlan port")
            vlans[-1]["ports"].append({"port": int(m[1]), "tagged": m[2] != "0",
                                       "active": m[3] != "0", "status": m[4]})
        else:
            m = _match(_VLAN, line, "vlan")
            vlans.append({"vlan": int(m[1]), "ports": []})
    return vlans


_INFO = re.compile(r"pid ([0-9]+) MAC ([0-9a-f]{2}(?::[0-9a-f]{2}){5}) uptime ([0-9]+)", re.ASCII)
_MGMT = re.compile(r"mgmt (.*) perm (0[0-7]{3,})", re.ASCII | re.DOTALL)


def parse_showinfo(lines: list[str]) -> dict:
    """showinfo: banner lines, a blank line, `pid N MAC M uptime N`, optional `mgmt P perm 0NNN`."""
    for i, line in enumerate(lines):
        m = _INFO.fullmatch(line)
        if m:
            break
    else:
        raise ParseError("showinfo output has no 'pid N MAC M uptime N' line")
    banner = lines[:i]
    if banner and banner[-1] == "":
        banner = banner[:-1]
    info = {"banner": banner, "pid": int(m[1]), "mac": m[2], "uptime": int(m[3]), "mgmt": None}
    rest = lines[i + 1:]
    if rest:
        mm = _match(_MGMT, rest[0], "showinfo mgmt")
        info["mgmt"] = {"path": mm[1], "mode": mm[2]}
        if len(rest) > 1:
            raise ParseError(f"unexpected showinfo line: {rest[1]!r}")
    return info


_KEY_VALUE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.ASCII | re.DOTALL)


def _value(text: str) -> int | bool | str:
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?[0-9]+", text, re.ASCII):
        return int(text)
    return text


def parse_port_showinfo(lines: list[str]) -> dict:
    """port/showinfo: `Numports=32`, `HUB=false`, `counters=true` -> numports, hub, counters."""
    info: dict = {}
    for line in lines:
        m = _match(_KEY_VALUE, line, "KEY=VALUE")
        info[m[1].lower()] = _value(m[2])
    return info


_SETTING = re.compile(r"([A-Za-z][A-Za-z ]*?) (-?[0-9]+)(?: secs)?", re.ASCII)


def parse_hash_showinfo(lines: list[str]) -> dict:
    """hash/showinfo: `Hash size 128`, `GC interval 2 secs`, ... -> hash_size, gc_interval,
    gc_expire, min_persistence (seconds)."""
    info: dict = {}
    for line in lines:
        m = _match(_SETTING, line, "hash setting")
        info["_".join(m[1].lower().split())] = int(m[2])
    return info


PARSERS = {
    "port/print": parse_ports,
    "port/allprint": parse_ports,
    "hash/print": parse_hash,
    "hash/find": parse_hash,
    "vlan/print": parse_vlans,
    "vlan/allprint": parse_vlans,
    "showinfo": parse_showinfo,
    "port/showinfo": parse_port_showinfo,
    "hash/showinfo": parse_hash_showinfo,
}


def to_json(command: str, lines: list[str]):
    """The JSON document for a command's output lines: parsed for the print commands,
    {"lines": [...]} for any other command."""
    words = command.split()
    parser = PARSERS.get(words[0]) if words else None
    if parser is None:
        return {"lines": list(lines)}
    return parser(list(lines))
