"""cffi (API mode) build of pyvde-slirp's per-packet arithmetic: ``plugs._slirp``."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from build_dataplane import api_builder

ffibuilder = api_builder("plugs._slirp", ["slirp_fast.h", "slirp_link.h", "tcp_fast.h"],
                         ["slirp_fast.c", "slirp_link.c", "tcp_fast.c", "tap_gso.c",
                          "inet_csum.c"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
