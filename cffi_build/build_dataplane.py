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


def api_builder(module: str, headers: list[str], sources: list[str],
                libraries: list[str] = ()) -> FFI:
    """A cffi API-mode builder for `module`, declared by `headers` and compiled from
    `sources` (all in cffi_build/): what every build script of the project needs."""
    ffi = FFI()
    ffi.cdef("\n".join(cdef_from_header((HERE / h).read_text()) for h in headers))
    ffi.set_source(
        module,
        "\n".join(f'#include "{h}"' for h in headers),
        # Paths relative to the project root, where setuptools runs the build scripts.
        sources=[f"cffi_build/{s}" for s in sources],
        include_dirs=["cffi_build"],
        extra_compile_args=["-O2", "-std=gnu11", "-Wall"],
        libraries=list(libraries),
    )
    return ffi


ffibuilder = api_builder("switchd._dataplane", HEADERS, SOURCES, ["pthread"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
