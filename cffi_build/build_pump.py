"""cffi (API mode) build of the plugs' frame pump: module ``plugs._pump``."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from build_dataplane import api_builder

ffibuilder = api_builder("plugs._pump", ["pump.h"],
                         ["pump.c", "stream.c", "tap_gso.c", "inet_csum.c"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
