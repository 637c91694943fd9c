"""cffi (API mode) build of pyvde-wirefilter's decision core and engine: ``plugs._wire``."""
import pathlib
import sys

from cffi import FFI

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from build_dataplane import cdef_from_header

HERE = pathlib.Path(__file__).resolve().parent

ffibuilder = FFI()
ffibuilder.cdef("\n".join(cdef_from_header((HERE / h).read_text())
                          for h in ("wire_core.h", "wire.h")))
ffibuilder.set_source(
    "plugs._wire",
    '#include "wire_core.h"\n#include "wire.h"',
    sources=["cffi_build/wire_core.c", "cffi_build/wire.c", "cffi_build/stream.c"],
    include_dirs=["cffi_build"],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall"],
    libraries=["m", "pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
