"""Fixtures: short socket directories, switches that are checked for survival and clean
exit at teardown, Debian clients, network namespaces."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from vdetest import Netns, SwitchProcess, VdePlug, need_tool


@pytest.fixture
def sockdir():
    """A short directory under /tmp: Unix socket paths must fit in 108 bytes."""
    d = Path(tempfile.mkdtemp(prefix="pv", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def switches(sockdir):
    """Starts pyvde-switches; at teardown each must still be alive, exit 0 on SIGTERM and
    leave no file behind (a directory that existed before is emptied, not removed)."""
    started: list[SwitchProcess] = []

    def start(*args: str, name: str = "sw", **kw) -> SwitchProcess:
        sw = SwitchProcess(sockdir / name, *args, **kw)
        started.append(sw)
        return sw

    yield start
    problems = []
    for sw in started:
        if sw.proc.returncode is not None:
            continue          # the test stopped it itself and checked what it wanted
        if not sw.alive():
            problems.append(f"{sw.dir}: switch died: {sw.log_text()[-2000:]}")
            continue
        code = sw.stop()
        if code != 0:
            problems.append(f"{sw.dir}: exit status {code}: {sw.log_text()[-2000:]}")
        if sw.dir.exists() and (not sw.dir_existed or os.listdir(sw.dir)):
            problems.append(f"{sw.dir} left behind: {os.listdir(sw.dir)}")
        if sw.mgmt_path and os.path.exists(sw.mgmt_path):
            problems.append(f"{sw.mgmt_path} left behind")
    assert not problems, "\n".join(problems)


@pytest.fixture
def switch(switches):
    return switches()


@pytest.fixture
def plugs():
    made: list[VdePlug] = []

    def plug(vnl: str, *args: str) -> VdePlug:
        p = VdePlug(vnl, *args)
        made.append(p)
        return p

    yield plug
    for p in made:
        p.close()


@pytest.fixture
def netns():
    made: list[Netns] = []

    def make() -> Netns:
        ns = Netns()
        made.append(ns)
        return ns

    yield make
    for ns in made:
        ns.delete()


@pytest.fixture
def debian_switch(sockdir):
    """Debian's vde_switch, for mixed set-ups."""
    need_tool("vde_switch")
    started = []

    def start(*args: str, name: str = "vdesw") -> SwitchProcess:
        sw = SwitchProcess(sockdir / name, *args, program="vde_switch",
                           stdin=subprocess.PIPE, mgmt=True)   # EOF on stdin stops vde_switch
        started.append(sw)
        return sw

    yield start
    for sw in started:
        sw.stop()


@pytest.fixture
def cleanup():
    """Callables run at teardown, last added first (list this fixture last, so it runs
    before the switches and namespaces are torn down)."""
    fns: list = []
    yield fns.append
    for fn in reversed(fns):
        with contextlib.suppress(Exception):
            fn()
