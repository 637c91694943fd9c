"""cffi (API mode) build of pyvde-cable's engine: module ``plugs._cable`` (libsodium)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from build_dataplane import api_builder

ffibuilder = api_builder("plugs._cable", ["cable.h"], ["cable.c", "mac_table.c"],
                         ["sodium", "pthread"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
