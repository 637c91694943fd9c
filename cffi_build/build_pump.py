"""cffi (API mode) build of the plugs' frame pump: module ``plugs._pump``.

Declarations are read from pump.h, the single source of truth for the C API.
"""
import pathlib
import sys

from cffi import FFI

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from build_dataplane import cdef_from_header  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent

ffibuilder = FFI()
ffibuilder.cdef(cdef_from_header((HERE / "pump.h").read_text()))
ffibuilder.set_source(
    "plugs._pump",
    '#include "pump.h"',
    sources=["cffi_build/pump.c", "cffi_build/stream.c"],
    include_dirs=["cffi_build"],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
