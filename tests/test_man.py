"""Every command's man page renders without groff warnings."""
import subprocess
from pathlib import Path

import pytest
from vdetest import need_tool

PAGES = sorted((Path(__file__).resolve().parent.parent / "man").glob("*.1"))


def test_every_command_has_a_page():
    import tomllib
    project = tomllib.loads((PAGES[0].parent.parent / "pyproject.toml").read_text())["project"]
    assert {p.stem for p in PAGES} >= set(project["scripts"])


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_renders_cleanly(page):
    need_tool("man")
    r = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True, text=True,
                       env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "NAME" in r.stdout and page.stem in r.stdout
