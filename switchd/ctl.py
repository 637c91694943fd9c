"""pyvde-ctl: one-shot management console client for scripts, like vde2's unixcmd.

Connects to the management socket of pyvde-switch or vde_switch (-M), runs one command
(or each line of a file), prints the data block and exits with the command's status:
0 on `1000 Success`, 1 when the switch reported an error, 2 when the console could not
be reached or understood. With --json the print commands' output is parsed
(switchd.console_parse) and printed as one JSON document.

Debian's vde_switch takes each read() as one command, so every command is sent with
a single write and its whole reply (status line and prompt) is read before the next.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import time

from switchd.console_parse import ParseError, Reply, parse_banner, parse_reply, to_json

PROG = "pyvde-ctl"
EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
DEFAULT_TIMEOUT = 10.0
MAX_BANNER = 1 << 16


class CtlError(Exception):
    """The console could not be reached or understood: a one-line message, exit status 2."""


class ConsoleClient:
    """A blocking console session: connect and read the banner, then command() per line."""

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT):
        self.path = path
        self.timeout = timeout
        self.buf = b""
        self.ended = False
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(path)
            except FileNotFoundError:
                raise CtlError(f"{path}: no such socket (is a switch running with -M {path}?)"
                               ) from None
            except ConnectionRefusedError:
                raise CtlError(f"{path}: connection refused (no switch is listening there)"
                               ) from None
            except TimeoutError:
                raise CtlError(f"{path}: connect timed out after {timeout:g} s") from None
            except OSError as e:
                raise CtlError(f"{path}: cannot connect: {e.strerror or e}") from None
            self.banner, self.prompt = self._read(self._banner, "its prompt")
        except BaseException:
            self.sock.close()
            raise

    def _banner(self, eof: bool):
        got = parse_banner(self.buf)
        if got is not None:
            self.buf = b""
            return got
        if eof:
            raise EOFError("the server closed the connection before its prompt")
        if len(self.buf) > MAX_BANNER:
            raise CtlError(f"{self.path}: no prompt in the first {MAX_BANNER} bytes:"
                           " not a VDE management console")
        return None

    def _read(self, parse, waiting_for: str):
        """Receives until parse(eof) returns something, within the timeout."""
        deadline = time.monotonic() + self.timeout
        eof = False
        while True:
            try:
                got = parse(eof)
            except EOFError as e:
                raise CtlError(f"{self.path}: {e}") from None
            if got is not None:
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                raise CtlError(f"{self.path}: timed out after {self.timeout:g} s waiting for"
                               f" {waiting_for}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError as e:
                raise CtlError(f"{self.path}: {e.strerror or e}") from None
            if not chunk:
                eof = True
            self.buf += chunk

    def command(self, line: str) -> Reply:
        """Sends one command line in one write and returns its reply."""
        if self.ended:
            raise CtlError(f"{self.path}: the session has ended; {line!r} was not run")
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(line.encode() + b"\n")
        except TimeoutError:
            raise CtlError(f"{self.path}: timed out sending {line!r}") from None
        except OSError as e:
            raise CtlError(f"{self.path}: cannot send {line!r}: {e.strerror or e}") from None

        def reply(eof: bool):
            got = parse_reply(self.buf, self.prompt, eof)
            if got is None:
                return None
            r, self.buf = got
            return r

        r = self._read(reply, f"the reply to {line!r}")
        self.ended = r.ended
        return r

    def logout(self) -> None:
        """Ends the session politely; the reply does not matter any more, so errors and a
        silent server are ignored (after a short wait)."""
        if self.ended:
            return
        self.ended = True
        try:
            self.sock.settimeout(min(self.timeout, 2.0))
            self.sock.sendall(b"logout\n")
            while self.sock.recv(4096):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


# ------------------------------------------------------------------ command line

def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [--json] [--timeout S] SOCK COMMAND [ARG...]\n"
              f"       {PROG} [--json] [--timeout S] -f FILE SOCK",
        description="Run management console commands on pyvde-switch or vde_switch. "
                    "Options go before SOCK; every word after SOCK is part of the command.",
        epilog="Exit status: 0 success, 1 the switch reported an error, 2 connection, "
               "usage or output-format error.")
    p.add_argument("--json", action="store_true",
                   help="print the output as one JSON document (parsed for the print commands)")
    p.add_argument("--timeout", type=_positive, default=DEFAULT_TIMEOUT, metavar="S",
                   help=f"seconds to wait for each answer (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("-f", "--file", metavar="FILE",
                   help="run each non-empty line of FILE not starting with # ('-': stdin)")
    p.add_argument("sock", metavar="SOCK", help="the switch's management socket (its -M path)")
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]",
                   help="the command, its words joined by spaces")
    return p


def _read_commands(path: str) -> list[str]:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise CtlError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


class _Output:
    """stdout that goes quiet when its reader goes away (`pyvde-ctl ... | head -1`)."""

    def __init__(self):
        self.broken = False

    def write(self, text: str) -> None:
        if self.broken:
            return
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            self.broken = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


def _error(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def run(sock: str, commands: list[str], as_json: bool, timeout: float,
        many: bool = False) -> int:
    """Runs commands in one session; returns the exit status. `many`: the commands came
    from a file, so --json prints one array of {"command", "result"} objects."""
    out = _Output()
    documents: list[dict] = []
    status = EXIT_OK
    try:
        client = ConsoleClient(sock, timeout)
    except CtlError as e:
        _error(str(e))
        return EXIT_ERROR
    try:
        for i, line in enumerate(commands):
            if client.ended:
                raise CtlError(f"{sock}: the session ended at {commands[i - 1]!r};"
                               f" {line!r} was not run")
            reply = client.command(line)
            if not reply.ok:
                if not as_json:
                    out.write("".join(f"{ln}\n" for ln in reply.output))
                _error(f"{line}: {reply.text}")
                status = EXIT_FAILED
                break
            if as_json:
                lines = reply.data if reply.data is not None else reply.output
                try:
                    doc = to_json(line, lines)
                except ParseError as e:
                    raise CtlError(f"{line}: cannot parse the output: {e}") from None
                if many:
                    documents.append({"command": line, "result": doc})
                else:
                    out.write(json.dumps(doc, indent=2) + "\n")
            else:
                out.write("".join(f"{ln}\n" for ln in reply.output))
    except CtlError as e:
        _error(str(e))
        status = EXIT_ERROR
    finally:
        if as_json and many and status != EXIT_ERROR:
            out.write(json.dumps(documents, indent=2) + "\n")
        client.logout()
        client.close()
    return status


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.file is not None and args.words:
        parser.error("give either COMMAND or -f FILE, not both")
    if args.file is None and not args.words:
        parser.error("missing COMMAND (or -f FILE)")
    if args.file is not None:
        try:
            commands = _read_commands(args.file)
        except CtlError as e:
            _error(str(e))
            return EXIT_ERROR
    else:
        line = " ".join(args.words).strip()
        if not line or line.startswith("#"):
            parser.error("the command is empty (or a comment)")
        if "\n" in line or "\r" in line:
            parser.error("the command must be one line")
        commands = [line]
    return run(args.sock, commands, args.json, args.timeout, many=args.file is not None)


if __name__ == "__main__":
    sys.exit(main())
