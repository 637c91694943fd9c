"""The benchmark harness still runs (a 1-second smoke run; the numbers are not judged here)."""
import re
import subprocess
import sys
from pathlib import Path

from vdetest import need, need_tool

BENCH = Path(__file__).resolve().parent.parent / "bench" / "switch_bench.py"


def test_switch_benchmark_smoke_run():
    need_tool("gcc", "vde_switch")
    need(Path("/usr/include/libvdeplug.h").exists(), "libvdeplug-dev")
    r = subprocess.run([sys.executable, str(BENCH), "--quick", "--only", "1 -> 1, 64 B"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    row = re.search(r"^\| 1 -> 1, 64 B \| ([\d,]+) \| ([\d,]+) \| ([\d.]+)x \| ([\d,]+) \|",
                    r.stdout, re.MULTILINE)
    assert row, r.stdout
    assert all(int(row.group(i).replace(",", "")) > 1000 for i in (1, 2, 4))
