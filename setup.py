# The project is described in pyproject.toml; this file only wires the cffi C
# modules into the setuptools build (cffi_modules has no pyproject.toml spelling).
from setuptools import setup

setup(cffi_modules=["cffi_build/build_dataplane.py:ffibuilder",
                    "cffi_build/build_pump.py:ffibuilder",
                    "cffi_build/build_wire.py:ffibuilder",
                    "cffi_build/build_slirp.py:ffibuilder",
                    "cffi_build/build_cable.py:ffibuilder"])
