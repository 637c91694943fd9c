"""cffi (API mode) build of pyvde-slirp's per-packet arithmetic: ``plugs._slirp``."""
import pathlib
import sys

from cffi import FFI

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from build_dataplane import cdef_from_header  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent

ffibuilder = FFI()
ffibuilder.cdef(cdef_from_header((HERE / "slirp_fast.h").read_text()))
ffibuilder.set_source(
    "plugs._slirp",
    '#include "slirp_fast.h"',
    sources=["cffi_build/slirp_fast.c"],
    include_dirs=["cffi_build"],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
