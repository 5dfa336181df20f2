"""Make the ROS 2 wheels' CMake exports usable from this virtual environment.

The wheels are built on manylinux images and their exported CMake targets name paths of that image
(/opt/python/cp311-cp311/... for the Python and numpy headers, /usr/lib64/libtinyxml2.so). CMake refuses
imported targets with non-existent include paths, so every interface package build would fail. This rewrites
those paths to this interpreter's include directory, the venv's numpy headers and the tinyxml2 the wheels bundle.
Idempotent: a second run finds nothing to change.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import numpy

MANYLINUX_PYTHON_INCLUDE = "/opt/python/cp311-cp311/include/python3.11"
MANYLINUX_NUMPY_INCLUDE = "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"
MANYLINUX_TINYXML2 = "/usr/lib64/libtinyxml2.so"


def replacements(prefix: Path) -> dict[str, str]:
    """Map each manylinux path to its counterpart in the environment at `prefix`."""
    site_packages = Path(sysconfig.get_paths(vars={"base": str(prefix), "platbase": str(prefix)})["purelib"])
    tinyxml2 = sorted(site_packages.glob("ros_fastrtps.libs/libtinyxml2*.so*"))
    mapping = {
        MANYLINUX_PYTHON_INCLUDE: sysconfig.get_paths()["include"],
        MANYLINUX_NUMPY_INCLUDE: numpy.get_include(),
    }
    if tinyxml2:
        mapping[MANYLINUX_TINYXML2] = str(tinyxml2[0])
    return mapping


def patch(prefix: Path) -> int:
    """Rewrite the exported CMake files under `prefix`; return how many files changed."""
    mapping = replacements(prefix)
    changed = 0
    for cmake_file in (prefix / "share").glob("*/cmake/*.cmake"):
        text = cmake_file.read_text()
        new = text
        for old, replacement in mapping.items():
            new = new.replace(old, replacement)
        if new != text:
            cmake_file.write_text(new)
            changed += 1
    return changed


if __name__ == "__main__":
    venv = Path(sys.argv[1] if len(sys.argv) > 1 else sys.prefix).resolve()
    print(f"patch_ros_wheels: rewrote manylinux paths in {patch(venv)} CMake files under {venv}")
