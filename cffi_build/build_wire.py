"""cffi (API mode) build of pyvde-wirefilter's decision core and engine: ``plugs._wire``."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from build_dataplane import api_builder

ffibuilder = api_builder("plugs._wire", ["wire_core.h", "wire.h"],
                         ["wire_core.c", "wire.c", "stream.c"], ["m", "pthread"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
