"""The switch: wires the control socket, ports, data plane and consoles together.

Owns the lifetime (start, run under trio, clean shutdown that removes every file it
made) and the two operations that cross modules: plugging an endpoint in (port
choice, data socket, data plane) and unplugging it.
"""
from __future__ import annotations

import errno
import logging
import os
import secrets
import signal
import time

import trio

from . import capture, console, control_socket, debug, mac_table, ports, vlans
from .console import CommandTable, Context, SessionEnd
from .control_request import Request
from .control_socket import ControlSocket, StartupError
from .daemon import held_stop_signal
from .dataplane import EV_CAPTURE_ERROR, EV_HASH_ADD, EV_HASH_DEL, DataPlane
from .mgmt_socket import ConsoleHost, MgmtSocket, serve_stdin, stdin_usable
from .options import VERSION, Options
from .permissions import GroupError, Permissions
from .ports import Endpoint, PortTable

log = logging.getLogger("pyvde-switch")


class Switch:
    def __init__(self, opts: Options):
        self.opts = opts
        try:
            self.perms = Permissions.from_options(opts.mode, opts.dirmode, opts.group,
                                                  opts.mgmtmode, opts.mgmtgroup)
        except GroupError as e:
            raise StartupError(str(e)) from None
        self.mac = opts.macaddr or b"\x00\xff" + secrets.token_bytes(4)
        self.started = time.monotonic()
        self.ports = PortTable(opts.numports)
        self.dataplane = DataPlane(opts.numports + 1, opts.maxframe, opts.hashsize)
        self.dataplane.hub = opts.hub
        self.table_times = mac_table.TableTimes()
        self.control = ControlSocket(self, os.path.abspath(opts.sock), self.perms,
                                     opts.handshake_timeout)
        self.mgmt: MgmtSocket | None = None    # made once the commands are (showinfo shows it)
        self.debug = debug.DebugHub(on_hash_interest=self.dataplane.set_hash_events)
        self.vlans = vlans.Vlans(self)
        self.captures = capture.Captures(self)
        self._shutdown = None
        self._shutdown_requested = False
        self.commands = self._build_commands()
        # The consoles' sessions are the debug hub's audience: debug/add subscribes them.
        self.consoles = ConsoleHost(self.commands, self.banner(), self.request_shutdown,
                                    audience=self.debug)
        if opts.mgmt:
            self.mgmt = MgmtSocket(self.consoles, os.path.abspath(opts.mgmt),
                                   self.perms.mgmt_mode, self.perms.mgmt_gid)

    # --- files
    def open(self) -> None:
        """Creates the control directory, ctl and mgmt sockets; StartupError says what failed."""
        self.control.open()
        if self.mgmt:
            try:
                self.mgmt.open()
            except StartupError:
                self.control.close()
                raise

    def close(self) -> None:
        """Removes every file the switch made and frees the data plane."""
        self.dataplane.stop()
        self.captures.stop_all()
        for ep in self.ports.endpoints():
            self.unplug(ep)
        self.control.close()
        if self.mgmt:
            self.mgmt.close()
        self.dataplane.close()

    # --- endpoints
    def plug(self, request: Request, ctl_fd: int, uid: int, groups: frozenset[int]) -> Endpoint:
        """Connects a new endpoint as the request asks; raises RequestError or PortError."""
        control_socket.check_client_socket(request.path, uid)
        data = control_socket.open_data_socket(request.path)
        path = ""
        try:
            port = self.ports.choose(request.port, uid, groups)
            path = self.control.data_path(port, data.fileno())
            mode, owner, group = self.perms.data_socket(os.geteuid(), uid, request.port == 0)
            control_socket.bind_data_socket(data, path, mode, owner, group)
            ep = Endpoint(ctl_fd, port, uid, request.description, data_path=path)
            ep.dp_id = self.dataplane.add_endpoint(port, data.fileno())
            data.detach()                       # the data plane owns the fd now
        except BaseException:
            data.close()
            if path:
                _unlink(path)
            raise
        if self.ports.attach(ep):
            self.debug.emit("port/+", debug.port_message(ep.port))
        self.debug.emit("port/ep/+", debug.endpoint_message(ep.port, ep.id))
        self.debug.emit("port/descr", debug.descr_message(ep.port, ep.id, ep.description))
        return ep

    def unplug(self, ep: Endpoint) -> None:
        if ep.dp_id < 0:
            return
        self.dataplane.remove_endpoint(ep.dp_id)   # flushes the port's MACs if it was the last
        ep.dp_id = -1
        _unlink(ep.data_path)
        self.debug.emit("port/ep/-", debug.endpoint_message(ep.port, ep.id))
        if self.ports.detach(ep):
            self.debug.emit("port/-", debug.port_message(ep.port))
        log.info("port %d: endpoint %d unplugged", ep.port, ep.id)

    def close_endpoint(self, port: int, endpoint_id: int) -> bool:
        if self.ports.find_endpoint(port, endpoint_id) is None:
            return False
        return self.control.close_connection(endpoint_id)

    # --- consoles
    def banner(self) -> str:
        return (f"pyvde-switch V.{VERSION}\n"
                "(C) the pyvde developers - MIT licence; speaks VDE switch 2.3.2's protocol\n")

    def ports_resized(self, numports: int) -> None:
        self.captures.ports_resized(numports)

    def start_captures(self) -> None:
        """--capture PORT:FILE options, after the rc file (which may have resized ports)."""
        for port, path in self.opts.captures:
            try:
                self.captures.start(port, path)
            except console.CommandError as e:
                raise StartupError(f"--capture {port}:{path}: {e}") from None

    def request_shutdown(self) -> None:
        self._shutdown_requested = True
        if self._shutdown is not None:
            self._shutdown.set()

    def _build_commands(self) -> CommandTable:
        table = CommandTable()
        control_socket.register_commands(table, self.control)

        @table.command("help", "[arg]", "Help (limited to arg when specified)", data=True)
        def help_(ctx: Context) -> None:
            ctx.out += table.help_lines(ctx.arg)

        @table.command("logout", "", "logout from this mgmt terminal")
        def logout(ctx: Context) -> None:
            raise SessionEnd("logout")

        @table.command("shutdown", "", "shutdown of the switch")
        def shutdown(ctx: Context) -> None:
            raise SessionEnd("shutdown")

        @table.command("showinfo", "", "show switch version and info", data=True)
        def showinfo(ctx: Context) -> None:
            ctx.out += self.banner().splitlines() + [""]
            mac = ":".join(f"{b:02x}" for b in self.mac)
            ctx.out.append(f"pid {os.getpid()} MAC {mac} uptime {int(time.monotonic() - self.started)}")
            if self.mgmt:
                ctx.out.append(f"mgmt {self.mgmt.path} perm 0{self.mgmt.mode:03o}")

        @table.command("load", "path", "load a configuration script")
        def load(ctx: Context) -> None:
            try:
                results = console.run_script(table, ctx.arg, ctx.session)
            except OSError as e:
                raise console.CommandError(e.errno or errno.EIO) from None
            ctx.raw.append(console.transcript(ctx.arg, results))
            if results and results[-1][1].action == "shutdown":
                raise SessionEnd("shutdown")

        debug.register_commands(table, self.debug)
        mac_table.register_commands(table, self)
        ports.register_commands(table, self)
        capture.register_commands(table, self.captures)
        vlans.register_commands(table, self.vlans)
        return table

    def load_rcfile(self) -> None:
        path = self.opts.rcfile
        if path is None:
            home = os.path.expanduser("~/.vde2/vde_switch.rc")
            for candidate in (home, "/etc/vde2/vde_switch.rc"):
                if os.access(candidate, os.R_OK):
                    path = candidate
                    break
        if path is None:
            return
        try:
            results = console.run_script(self.commands, path)
        except OSError as e:
            raise StartupError(f"cannot run rc file {path}: {e.strerror}") from None
        except console.CommandError as e:
            raise StartupError(f"cannot run rc file {path}: {e}") from None
        for line, reply in results:
            if reply.code:
                log.warning("rc file %s: %s: 1%03d %s", path, line, reply.code, os.strerror(reply.code))
            if reply.action == "shutdown":
                self.request_shutdown()

    # --- lifetime
    async def run(self) -> None:
        self._shutdown = trio.Event()
        if self._shutdown_requested:
            self._shutdown.set()
        self.dataplane.start()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._signals)
                nursery.start_soon(self._dataplane_events)
                nursery.start_soon(self.control.serve)
                if self.mgmt:
                    nursery.start_soon(self.mgmt.serve)
                if not self.opts.daemon and not self.opts.nostdin and stdin_usable():
                    nursery.start_soon(serve_stdin, self.consoles)
                await self._shutdown.wait()
                nursery.cancel_scope.cancel()
        finally:
            self.dataplane.stop()

    async def _dataplane_events(self) -> None:
        """MACs learned and forgotten (hash/+ and hash/- for debug/add), failed captures."""
        fd = self.dataplane.event_fd
        while True:
            await trio.lowlevel.wait_readable(fd)
            for ev in self.dataplane.read_events():
                if ev.kind == EV_HASH_ADD:
                    self.debug.emit("hash/+", debug.hash_message(ev.mac, ev.vlan, ev.port))
                elif ev.kind == EV_HASH_DEL:
                    self.debug.emit("hash/-", debug.hash_message(ev.mac, ev.vlan, ev.port))
                elif ev.kind == EV_CAPTURE_ERROR:
                    self.captures.failed(ev.port, ev.err)

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            early = held_stop_signal()
            if early is not None:
                log.info("%s received while starting, cleaning up and exiting",
                         signal.Signals(early).name)
                self.request_shutdown()
            async for sig in signals:
                if sig == signal.SIGHUP:
                    log.info("SIGHUP received and ignored (vde_switch does the same)")
                    continue
                log.info("%s received, cleaning up and exiting", signal.Signals(sig).name)
                self.request_shutdown()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("cannot remove %s: %s", path, e.strerror)
