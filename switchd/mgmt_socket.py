"""Where console sessions come from: a -M management socket and standard input.

Only moves bytes between clients and console.ConsoleSession; every decision about
commands and replies is made there. What a program (pyvde-switch, pyvde-wirefilter)
gives its consoles is a ConsoleHost. Socket sessions run at once, up to the host's
max_sessions; a slow or vanished client only ends its own session.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from .console import PROMPT, Audience, CommandTable, ConsoleSession
from .listeners import accept_loop, close_listener, listen_unix

log = logging.getLogger("pyvde-switch")
MAX_QUEUED = 4096    # replies and events waiting for a slow console client
PARTIAL_LINE_WAIT = 0.2   # seconds of silence that end a line sent without "\n"
TOO_MANY = "too many mgmt connections"   # wirefilter's words; the line a refused client gets


@dataclass
class ConsoleHost:
    """What a program gives the code that serves its consoles."""
    commands: CommandTable
    banner: str                      # a socket session's first text, before the prompt
    shutdown: Callable[[], None]     # a session ended with `shutdown` (or Ctrl-D on a tty)
    prompt: bytes = PROMPT
    # The open sessions: each joins when it opens and leaves when it ends, so the program
    # can publish event lines to those that subscribed.
    audience: Audience = field(default_factory=Audience)
    max_sessions: int | None = None  # socket sessions at once (None: any number)


class MgmtSocket:
    def __init__(self, host: ConsoleHost, path: str, mode: int, gid: int):
        self.host = host
        self.path = path
        self.mode = mode
        self.gid = gid
        self.listener = None
        self.sessions = 0
        self.events_dropped = 0

    def open(self) -> None:
        self.listener = listen_unix(self.path, self.mode, self.gid)

    def close(self) -> None:
        self.listener = close_listener(self.listener, self.path)

    async def serve(self) -> None:
        await accept_loop(self.listener, self.path, self._session)

    async def _session(self, conn) -> None:
        limit = self.host.max_sessions
        if limit is not None and self.sessions >= limit:
            await _refuse(conn)
            return
        session = ConsoleSession(self.host.commands, self.host.prompt)
        self.sessions += 1
        # One writer sends replies and debug events in the order they were made, so an
        # event caused by a command comes before that command's status line.
        send, receive = trio.open_memory_channel(MAX_QUEUED)

        def deliver(event: bytes) -> None:
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                self.events_dropped += 1    # a client that does not read loses events only
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        session.deliver = deliver
        self.host.audience.join(session)
        try:
            async with trio.SocketStream(conn) as stream:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, stream, receive, nursery.cancel_scope)
                    async with send:      # closing it lets the writer finish the queue
                        await self._reader(stream, session, send)
                        session.deliver = lambda event: None
                if session.closed:
                    with contextlib.suppress(*_GONE):
                        await _linger(stream)
        except Exception:
            log.exception("console session: internal error; session closed")
        finally:
            session.deliver = lambda event: None
            self.sessions -= 1
            self.host.audience.leave(session)

    async def _reader(self, stream, session, send) -> None:
        try:
            await send.send(self.host.banner.encode() + session.prompt)
            while not session.closed:
                data = None
                # vdeterm sends each command without "\n": a line the client stops in
                # the middle of is run once it has been quiet for PARTIAL_LINE_WAIT.
                with trio.move_on_after(PARTIAL_LINE_WAIT if session.has_partial() else math.inf):
                    data = await stream.receive_some(4096)
                if data is None:
                    replies = session.flush_partial()
                else:
                    replies = session.receive(data) if data else session.end_of_input()
                for reply in replies:
                    await send.send(reply.text)
                    if reply.action == "shutdown":
                        log.info("shutdown requested on the management console")
                        self.host.shutdown()
                if data == b"":
                    break
        except _GONE:
            pass     # the client went away; its session simply ends

    @staticmethod
    async def _writer(stream, receive, scope) -> None:
        try:
            async with receive:
                async for data in receive:
                    await stream.send_all(data)
        except _GONE:
            scope.cancel()   # nobody to talk to: end the session


_GONE = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


LINGER_SECONDS = 2.0


async def _linger(stream) -> None:
    """Half-close after "9999 END OF SESSION" and wait for the client to hang up.

    unixterm exits as soon as poll() reports POLLHUP, before reading what is still queued,
    so closing outright sometimes loses the last reply (vde_switch has this race). A
    half-close only raises POLLIN: the client reads the reply, then end of file.
    """
    await stream.send_eof()
    with trio.move_on_after(LINGER_SECONDS):
        while await stream.receive_some(4096):
            pass


async def _refuse(conn) -> None:
    """One session too many: the client reads why, then end of file (wirefilter only logs
    the line and closes)."""
    log.warning(TOO_MANY)
    with contextlib.suppress(*_GONE):
        async with trio.SocketStream(conn) as stream:
            with trio.move_on_after(LINGER_SECONDS):
                await stream.send_all(TOO_MANY.encode() + b"\n")
            await _linger(stream)


def stdin_usable() -> bool:
    """A console on stdin only if stdin is open and, for a terminal, ours (not a background job)."""
    try:
        os.fstat(0)
    except OSError:
        return False
    if os.isatty(0):
        try:
            return os.tcgetpgrp(0) == os.getpgrp()
        except OSError:
            return False
    return True


class StdoutWriter:
    """Standard output written by a thread of its own, so that a reader that stops reading
    (a pipe nobody empties) never stalls the event loop: up to LIMIT bytes wait their
    turn, in order; beyond that, output is dropped (counted, and logged once)."""

    LIMIT = 1 << 20

    def __init__(self, out):
        self.out = out
        self.queue: deque[bytes] = deque()
        self.size = 0
        self.dropped = 0
        self.cv = threading.Condition()
        threading.Thread(target=self._run, name="stdout-console", daemon=True).start()

    def write(self, data: bytes) -> None:
        with self.cv:
            if self.size + len(data) > self.LIMIT:
                if not self.dropped:
                    log.warning("standard output is not being read: console output dropped")
                self.dropped += len(data)
                return
            self.queue.append(data)
            self.size += len(data)
            self.cv.notify()

    def _run(self) -> None:
        while True:
            with self.cv:
                while not self.queue:
                    self.cv.wait()
                data = self.queue.popleft()
            try:
                self.out.write(data)
                self.out.flush()
            except (OSError, ValueError):
                pass                    # nobody there any more: what waits is dropped
            with self.cv:
                self.size -= len(data)
                self.cv.notify_all()

    def drain(self, timeout: float) -> None:
        """Waits (at most `timeout` seconds) until everything queued is written."""
        with self.cv:
            self.cv.wait_for(lambda: self.size == 0, timeout)

    async def drained(self, timeout: float = 2.0) -> None:
        """drain() from trio, also while being cancelled (the last lines of a session)."""
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self.drain, timeout)


async def serve_stdin(host: ConsoleHost) -> None:
    """vde_switch's console on standard input (§4.4): no banner; the prompt only on a tty.

    stdin is read by a helper thread with blocking reads, so the terminal's file status
    flags are never changed. End of input on a terminal (Ctrl-D) shuts the program down, as
    vde_switch does; end of a pipe or /dev/null only ends this console (vde_switch would
    exit, which surprises everyone who starts it in the background).
    """
    tty = os.isatty(0)
    session = ConsoleSession(host.commands, prompt=host.prompt if tty else b"", on_stdin=True)
    out = StdoutWriter(sys.stdout.buffer)
    session.deliver = out.write
    send, receive = trio.open_memory_channel(16)
    token = trio.lowlevel.current_trio_token()

    def reader() -> None:
        while True:
            try:
                data = os.read(0, 4096)
            except OSError:
                data = b""
            try:
                trio.from_thread.run(send.send, data, trio_token=token)
            except (trio.RunFinishedError, trio.Cancelled):
                return
            if not data:
                return

    threading.Thread(target=reader, name="stdin-console", daemon=True).start()
    if tty:
        out.write(session.prompt.lstrip(b"\n"))
    host.audience.join(session)
    try:
        async with receive:
            async for data in receive:
                replies = session.receive(data) if data else session.end_of_input()
                for reply in replies:
                    out.write(reply.text)
                    if reply.action == "shutdown":
                        await out.drained()
                        host.shutdown()
                if not data:
                    break
    finally:
        host.audience.leave(session)
        await out.drained()
    if tty:
        log.info("EOF on stdin, cleaning up and exiting")
        host.shutdown()
    else:
        log.debug("standard input ended; its console is closed, the rest keeps running")
