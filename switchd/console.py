"""The management console protocol of vde_switch (vde-protocol.md §4), without I/O.

A CommandTable holds the commands each module registers next to its own state
(ports.py registers port/*, mac_table.py hash/*, ...). A ConsoleSession turns the
bytes a console client sends into the bytes to send back, with vde_switch's framing:
banner, "\\nvde$ " prompt, "0000 DATA END WITH '.'" blocks, "1000 Success" or
"1<errno> <strerror>", "9999 END OF SESSION". Nothing a client sends can raise out of
a session: unknown commands, bad arguments and over-long lines become error replies.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass, field

PROMPT = b"\nvde$ "
DATA_HEADER = "0000 DATA END WITH '.'"
END_OF_SESSION = b"9999 END OF SESSION"
MAX_LINE = 1024


class CommandError(Exception):
    """A command failed: errno selects the reply line `1<errno> <strerror(errno)>`."""

    def __init__(self, code: int, detail: str = ""):
        super().__init__(detail or os.strerror(code))
        self.code = code


def bad_argument(detail: str = "") -> CommandError:
    return CommandError(errno.EINVAL, detail)


@dataclass
class Context:
    """What a command handler gets: its argument, the lines of its data block, its session."""
    arg: str
    out: list[str]
    session: ConsoleSession | None
    raw: list[str] = field(default_factory=list)   # text before the data block (load's echo)

    def int_arg(self, default: int | None = None) -> int:
        if not self.arg:
            if default is None:
                raise bad_argument("missing number")
            return default
        try:
            return int(self.arg, 10)
        except ValueError:
            raise bad_argument(f"'{self.arg}' is not a number") from None

    def int_args(self, count: int) -> list[int]:
        words = self.arg.split()
        if len(words) != count:
            raise bad_argument(f"expected {count} numbers")
        try:
            return [int(w, 10) for w in words]
        except ValueError:
            raise bad_argument("not a number") from None


Handler = Callable[[Context], None]


@dataclass(frozen=True)
class Command:
    path: str
    syntax: str
    help: str
    handler: Handler | None   # None: a menu header
    data: bool = False        # replies with a data block


@dataclass
class CommandTable:
    commands: list[Command] = field(default_factory=list)

    def menu(self, path: str, help: str) -> None:
        self.commands.append(Command(path, "============", help, None))

    def add(self, path: str, syntax: str, help: str, handler: Handler, data: bool = False) -> None:
        self.commands.append(Command(path, syntax, help, handler, data))

    def command(self, path: str, syntax: str = "", help: str = "", data: bool = False):
        """Decorator form of add()."""
        def register(fn: Handler) -> Handler:
            self.add(path, syntax, help, fn, data)
            return fn
        return register

    def find(self, line: str) -> tuple[Command, str] | None:
        """The command whose path is the longest prefix of line. vde_switch and wirefilter
        take the first registered one, which is the same wherever no path is a prefix of
        another registered later; pyvde-wirefilter's `loss-state` needs `loss` not to win."""
        best = None
        for cmd in self.commands:
            if cmd.handler is not None and line.startswith(cmd.path) and (
                    best is None or len(cmd.path) > len(best.path)):
                best = cmd
        return None if best is None else (best, line[len(best.path):].lstrip(" \t"))

    def help_lines(self, prefix: str) -> list[str]:
        lines = [f"{'COMMAND PATH':<18} {'SYNTAX':<15} HELP",
                 f"{'------------':<18} {'--------------':<15} ------------"]
        for cmd in self.commands:
            if cmd.path.startswith(prefix):
                lines.append(f"{cmd.path:<18} {cmd.syntax:<15} {cmd.help}")
        return lines


@dataclass(frozen=True)
class Reply:
    text: bytes
    action: str | None = None   # None, "logout" or "shutdown"
    code: int = 0               # the errno of the status line (0: success or no status)


def status_line(code: int) -> str:
    return "1000 Success\n" if code == 0 else f"1{code:03d} {os.strerror(code)}\n"


def execute(table: CommandTable, line: str, session: ConsoleSession | None = None) -> Reply:
    """Runs one command line and returns its reply (without the prompt)."""
    line = line.lstrip(" \t")
    if not line or line.startswith("#"):
        return Reply(b"")
    found = table.find(line)
    if found is None:
        return Reply(status_line(errno.ENOSYS).encode(), code=errno.ENOSYS)
    cmd, arg = found
    ctx = Context(arg.rstrip(" \t"), [], session)
    try:
        cmd.handler(ctx)
        code = 0
    except CommandError as e:
        code = e.code
    except SessionEnd as end:
        return Reply(END_OF_SESSION, end.action)
    text = "".join(ctx.raw)
    if cmd.data:
        text += DATA_HEADER + "\n" + "".join(f"{ln}\n" for ln in ctx.out) + ".\n"
    return Reply((text + status_line(code)).encode(), code=code)


MAX_LOAD_DEPTH = 8
_load_depth = 0


def run_script(table: CommandTable, path: str, session: ConsoleSession | None = None
               ) -> list[tuple[str, Reply]]:
    """Runs each command line of a file, as `load` and rc files do; returns (line, reply)
    pairs, stopping after a line that asked for shutdown.

    Raises OSError if the file cannot be read, CommandError(ELOOP) if scripts nest too
    deeply (a script that loads itself)."""
    global _load_depth
    if _load_depth >= MAX_LOAD_DEPTH:
        raise CommandError(errno.ELOOP, f"scripts nested more than {MAX_LOAD_DEPTH} deep")
    if "\0" in path:      # open() would raise ValueError, which no caller expects
        raise CommandError(errno.EINVAL, "NUL byte in the file name")
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [ln.strip() for ln in f.read().splitlines()]
    results: list[tuple[str, Reply]] = []
    _load_depth += 1
    try:
        for line in lines:
            if not line or line.startswith("#"):
                continue
            reply = _execute_keeping_events(table, line, session)
            results.append((line, reply))
            if reply.action == "shutdown":
                break
    finally:
        _load_depth -= 1
    return results


def _execute_keeping_events(table: CommandTable, line: str, session: ConsoleSession | None
                            ) -> Reply:
    """execute(), with the debug events the line causes for this session put in front of
    its reply: the transcript is sent after the whole script ran, and vde_switch shows
    each event after the echo of the line that caused it, not before the transcript."""
    if session is None:
        return execute(table, line, session)
    events: list[bytes] = []
    deliver, session.deliver = session.deliver, events.append
    try:
        reply = execute(table, line, session)
    finally:
        session.deliver = deliver
    if not events:
        return reply
    return Reply(b"".join(events) + reply.text, reply.action, reply.code)


def transcript(path: str, results: list[tuple[str, Reply]]) -> str:
    """What vde_switch's `load` prints: each line echoed as `vde[PATH]: LINE`, then its reply."""
    return "".join(f"vde[{path}]: {line}\n" + (reply.text.decode("utf-8", "replace")
                                                if reply.action is None else "")
                   for line, reply in results)


class SessionEnd(Exception):
    """Raised by logout/shutdown handlers to end the session."""

    def __init__(self, action: str):
        super().__init__(action)
        self.action = action


class ConsoleSession:
    """One console client: bytes in, bytes and actions out.

    Lines end with "\\n" ("\\r\\n" is accepted). A line longer than MAX_LINE gets
    `1007 Argument list too long` and is skipped up to its end. At end of input a
    last line without newline is still executed (so `printf help | socat ...` works),
    and so is one the client then stops sending after (flush_partial): vdeterm sends
    its commands without a newline, as vde_switch takes each read() as one command.
    """

    def __init__(self, table: CommandTable, prompt: bytes = PROMPT, on_stdin: bool = False):
        self.table = table
        self.prompt = prompt
        self.on_stdin = on_stdin
        self.closed = False
        self._buf = b""
        self._skipping = False
        self.subscriptions: set[str] = set()   # event topics (Audience; debug.py's categories)
        self.deliver: Callable[[bytes], None] = lambda data: None   # set by the transport

    def subscribe(self, topic: str) -> bool:
        """This session wants the event lines published to topic; False if it already did."""
        new = topic not in self.subscriptions
        self.subscriptions.add(topic)
        return new

    def unsubscribe(self, topic: str) -> bool:
        """No more event lines for topic; False if the session did not want them."""
        had = topic in self.subscriptions
        self.subscriptions.discard(topic)
        return had

    def _run(self, raw: bytes) -> list[Reply]:
        line = raw.rstrip(b"\r").decode("utf-8", "replace")
        reply = execute(self.table, line, self)
        if reply.action == "logout" and self.on_stdin:
            return [Reply(self.prompt)]   # vde_switch ignores logout on its stdin console
        if reply.action:
            self.closed = True
            return [reply]
        return [Reply(reply.text + self.prompt)]

    def receive(self, data: bytes) -> list[Reply]:
        replies: list[Reply] = []
        self._buf += data
        while not self.closed:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_LINE:
                    self._buf = b""
                    if not self._skipping:
                        self._skipping = True
                        replies.append(Reply(status_line(errno.E2BIG).encode() + self.prompt))
                break
            raw, self._buf = self._buf[:nl], self._buf[nl + 1:]
            if self._skipping or nl > MAX_LINE:
                if not self._skipping:
                    replies.append(Reply(status_line(errno.E2BIG).encode() + self.prompt))
                self._skipping = False
                continue
            replies.extend(self._run(raw))
        return replies

    def has_partial(self) -> bool:
        """Bytes of a line without its newline are waiting (or an over-long line is
        being skipped)."""
        return bool(self._buf) or self._skipping

    def flush_partial(self) -> list[Reply]:
        """The client went quiet in the middle of a line: that line is a command."""
        raw, self._buf = self._buf, b""
        skipping, self._skipping = self._skipping, False
        if raw.strip() and not skipping and not self.closed:
            return self._run(raw)
        return []

    def end_of_input(self) -> list[Reply]:
        raw, self._buf = self._buf, b""
        if raw.strip() and not self._skipping and not self.closed:
            return self._run(raw)
        return []


class Audience:
    """The open console sessions of a program, for asynchronous event lines (vde_switch's
    `debug/add`, wirefilter's `markov-debug`).

    A command handler subscribes its own session: `ctx.session.subscribe(topic)` (ctx.session
    is None for rc files). The program, from its trio thread, calls `publish(topic, line)`:
    exactly the open sessions subscribed to topic get line, through their deliver callback,
    in order with their replies. The code serving consoles (mgmt_socket) joins each session
    when it opens and makes it leave when it ends.
    """

    def __init__(self) -> None:
        self.sessions: set[ConsoleSession] = set()

    def join(self, session: ConsoleSession) -> None:
        self.sessions.add(session)

    def leave(self, session: ConsoleSession) -> None:
        self.sessions.discard(session)

    def wants(self, topic: str) -> bool:
        """Some open session is subscribed to topic (to skip making unwanted lines)."""
        return any(topic in s.subscriptions for s in self.sessions)

    def publish(self, topic: str, line: bytes) -> int:
        """Delivers line to each open session subscribed to topic; returns how many."""
        count = 0
        for s in list(self.sessions):
            if topic in s.subscriptions:
                s.deliver(line)
                count += 1
        return count
