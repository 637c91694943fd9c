"""Where console sessions come from: the -M management socket and standard input.

Only moves bytes between clients and console.ConsoleSession; every decision about
commands and replies is made there. Any number of socket sessions run at once; a slow
or vanished client only ends its own session.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading

import trio

from .console import ConsoleSession
from .listeners import accept_loop, close_listener, listen_unix

log = logging.getLogger("pyvde-switch")
MAX_QUEUED = 4096    # replies and events waiting for a slow console client
PARTIAL_LINE_WAIT = 0.2   # seconds of silence that end a line sent without "\n"


class MgmtSocket:
    def __init__(self, switch, path: str, mode: int, gid: int):
        self.switch = switch
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
        session = self.switch.new_console_session()
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
            self.switch.end_console_session(session)

    async def _reader(self, stream, session, send) -> None:
        try:
            await send.send(self.switch.banner().encode() + session.prompt)
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
                        self.switch.request_shutdown()
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


async def serve_stdin(switch) -> None:
    """vde_switch's console on standard input (§4.4): no banner; the prompt only on a tty.

    stdin is read by a helper thread with blocking reads, so the terminal's file status
    flags are never changed. End of input on a terminal (Ctrl-D) stops the switch, as
    vde_switch does; end of a pipe or /dev/null only ends this console (vde_switch would
    exit, which surprises everyone who starts it in the background).
    """
    tty = os.isatty(0)
    session = ConsoleSession(switch.commands, prompt=b"\nvde$ " if tty else b"", on_stdin=True)
    out = sys.stdout.buffer

    def deliver(event: bytes) -> None:
        try:
            out.write(event)
            out.flush()
        except OSError:
            pass

    session.deliver = deliver
    switch.debug.attach(session)
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
        out.flush()
    async with receive:
        async for data in receive:
            replies = session.receive(data) if data else session.end_of_input()
            for reply in replies:
                out.write(reply.text)
                out.flush()
                if reply.action == "shutdown":
                    switch.request_shutdown()
            if not data:
                break
    switch.debug.detach(session)
    if tty:
        log.info("EOF on stdin, cleaning up and exiting")
        switch.request_shutdown()
    else:
        log.debug("standard input ended; the switch keeps running")
