"""Where console sessions come from: the -M management socket and standard input.

Only moves bytes between clients and console.ConsoleSession; every decision about
commands and replies is made there. Any number of socket sessions run at once; a slow
or vanished client only ends its own session.
"""
from __future__ import annotations

import logging
import os
import sys
import threading

import trio

from .console import ConsoleSession
from .listeners import accept_loop, close_listener, listen_unix

log = logging.getLogger("pyvde-switch")


class MgmtSocket:
    def __init__(self, switch, path: str, mode: int, gid: int):
        self.switch = switch
        self.path = path
        self.mode = mode
        self.gid = gid
        self.listener = None
        self.sessions = 0

    def open(self) -> None:
        self.listener = listen_unix(self.path, self.mode, self.gid)

    def close(self) -> None:
        self.listener = close_listener(self.listener, self.path)

    async def serve(self) -> None:
        await accept_loop(self.listener, self.path, self._session)

    async def _session(self, conn) -> None:
        session = self.switch.new_console_session()
        self.sessions += 1
        try:
            async with trio.SocketStream(conn) as stream:
                await stream.send_all(self.switch.banner().encode())
                await stream.send_all(session.prompt)
                while not session.closed:
                    data = await stream.receive_some(4096)
                    replies = session.receive(data) if data else session.end_of_input()
                    for reply in replies:
                        await stream.send_all(reply.text)
                        if reply.action == "shutdown":
                            log.info("shutdown requested on the management console")
                            self.switch.request_shutdown()
                    if not data:
                        break
                if session.closed:
                    await _linger(stream)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass     # the client went away; its session simply ends
        except Exception:
            log.exception("console session: internal error; session closed")
        finally:
            self.sessions -= 1
            self.switch.end_console_session(session)


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
    out = sys.stdout.buffer
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
    if tty:
        log.info("EOF on stdin, cleaning up and exiting")
        switch.request_shutdown()
    else:
        log.debug("standard input ended; the switch keeps running")
