"""cffi (API mode) build of pyvde-switch's C data plane: module ``switchd._dataplane``.

The declarations Python sees are read from the C headers themselves, so the
headers stay the single source of truth for the C API.
"""
import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
HEADERS = ["mac_table.h", "dataplane.h"]
SOURCES = ["mac_table.c", "dataplane.c"]


def cdef_from_header(text: str) -> str:
    """Keeps declarations and simple integer #defines; drops other preprocessor lines."""
    keep = []
    for line in text.splitlines():
        if line.startswith("#"):
            m = re.match(r"#define\s+(\w+)\s+(\d+)\s*(/\*.*\*/)?\s*$", line)
            if m:
                keep.append(f"#define {m.group(1)} {m.group(2)}")
            continue
        keep.append(line)
    return "\n".join(keep)


ffibuilder = FFI()
ffibuilder.cdef("\n".join(cdef_from_header((HERE / h).read_text()) for h in HEADERS))
ffibuilder.set_source(
    "switchd._dataplane",
    "\n".join(f'#include "{h}"' for h in HEADERS),
    # Paths relative to the project root, where setuptools runs this script.
    sources=[f"cffi_build/{s}" for s in SOURCES],
    include_dirs=["cffi_build"],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall"],
    libraries=["pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
