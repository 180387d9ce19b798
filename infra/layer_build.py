"""Builds a Lambda layer's contents with pip, without Docker, for the functions' runtime and architecture.

    .venv/bin/python -m infra.layer_build requirements.txt --runtime python3.12 --architecture arm64

``pip install --platform manylinux2014_<machine> --only-binary=:all: --python-version 3.X`` downloads the Linux
wheels of the pinned requirements whatever this machine is. Versions are those the tests run with: the requirement
file pins the direct dependencies, and the packages installed in this interpreter constrain the transitive ones.
A requirement without a wheel for the target stops the build with pip's own message (there is no fallback that
would ship something else). The result is cached under ``.build/layers/<key>``, where the key is a hash of what
decides its content: the requirement pins, the constraints, the platform and the Python version.

The packages ship with their bytecode when this Python is the target's (``python3.11`` built by a 3.11): Lambda
mounts a layer read-only under ``/opt``, so a package without ``__pycache__`` is compiled again at every cold start.
For Powertools, pydantic and boto3 that doubled the libraries' import (1,085 ms of CPU from sources, 573 ms with
bytecode, measured here). As for the code asset (``constructs/function.py``), the bytecode is hash-based and
unchecked (a zip keeps no modification times), compiled with a fixed hash seed and the paths the files have on
Lambda, so the same pins give the same layer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE_ROOT = REPO_ROOT / ".build" / "layers"
# manylinux2014 is glibc 2.17: it loads on Amazon Linux 2 (python3.11, glibc 2.26) and 2023 (python3.12+).
PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
# Bumped when the layout or the pip options change, so that old cached builds are not reused.
BUILD_FORMAT = "2"
# Where Lambda mounts a layer's python/ directory: the paths the bytecode records.
LAMBDA_LAYER_PYTHON = "/opt/python"


class LayerBuildError(RuntimeError):
    """pip could not install the requirements for the target (typically: no wheel for that platform)."""


@dataclass(frozen=True)
class LayerTarget:
    """Lambda's names: runtime ``python3.12``, architecture ``arm64``."""

    runtime: str
    architecture: str

    @property
    def python_version(self) -> str:
        return self.runtime.removeprefix("python")

    @property
    def bytecode(self) -> bool:
        """Whether this interpreter can compile the target's bytecode (the same minor version)."""
        return f"{sys.version_info.major}.{sys.version_info.minor}" == self.python_version

    @property
    def platform(self) -> str:
        try:
            return PLATFORMS[self.architecture]
        except KeyError:
            raise LayerBuildError(f"no pip platform for architecture {self.architecture!r}") from None


def versions_under_test() -> str:
    """``name==version`` of every distribution installed here (what the tests ran with), one per line."""
    pins = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        origin = json.loads(dist.read_text("direct_url.json") or "{}")
        if name and "dir_info" not in origin and "url" not in origin:  # not this project, nor a local checkout
            pins[name.lower().replace("_", "-")] = dist.version
    return "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def pip_command(requirements: Sequence[Path], constraints: Path, target_dir: Path, target: LayerTarget) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",  # compile_bytecode does it, reproducibly, and only for the target's Python
        "--target",
        str(target_dir),
        "--platform",
        target.platform,
        "--implementation",
        "cp",
        "--python-version",
        target.python_version,
        "--only-binary=:all:",
        *(option for path in requirements for option in ("--requirement", str(path))),
        "--constraint",
        str(constraints),
    ]


def requirement_lines(path: Path) -> list[str]:
    """The requirements themselves: comments and blank lines do not change a build."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def cache_key(requirements: Sequence[Path], constraints: str, target: LayerTarget) -> str:
    """Changes when what the layer contains would change, and only then."""
    digest = hashlib.sha256()
    pins = ["\n".join(requirement_lines(path)) for path in requirements]
    bytecode = "bytecode" if target.bytecode else "sources"
    for part in (BUILD_FORMAT, *pins, constraints, target.platform, "cp", target.python_version, bytecode):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def build_layer(requirements: Sequence[Path], target: LayerTarget, cache_root: Path = CACHE_ROOT) -> Path:
    """The layer's directory (``<dir>/python/...``, Lambda's layout), built first when it is not cached. Built in a
    temporary directory and renamed into place: a failed or interrupted build never leaves a cache entry."""
    constraints = versions_under_test()
    cached = cache_root / cache_key(requirements, constraints, target)
    if cached.is_dir():
        return cached
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="building-", dir=cache_root))
    try:
        constraints_file = staging / "constraints.txt"
        constraints_file.write_text(constraints)
        command = pip_command(requirements, constraints_file, staging / "layer" / "python", target)
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            names = " + ".join(path.name for path in requirements)
            raise LayerBuildError(
                f"cannot build the layer of {names} for {target.runtime} {target.architecture} "
                f"({target.platform}): pip found no installable wheel (or failed).\n{done.stderr.strip()}"
            )
        if target.bytecode:
            compile_bytecode(staging / "layer" / "python")
        try:
            (staging / "layer").rename(cached)
        except OSError:
            if not cached.is_dir():  # another synth finished first: theirs is the same content
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return cached


def compile_bytecode(directory: Path) -> None:
    """Unchecked hash-based ``.pyc`` files beside the sources of ``directory`` (the layer's ``python/``)."""
    command = [sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash"]
    done = subprocess.run(
        [*command, "-d", LAMBDA_LAYER_PYTHON, str(directory)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONHASHSEED": "0"},  # set constants (frozensets) marshal in a fixed order
    )
    if done.returncode != 0:
        raise LayerBuildError(f"cannot compile the layer's bytecode:\n{(done.stdout + done.stderr).strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("requirements", type=Path, nargs="+")
    parser.add_argument("--runtime", default="python3.11")
    parser.add_argument("--architecture", default="x86_64", choices=sorted(PLATFORMS))
    args = parser.parse_args(argv)
    try:
        requirements = [path.resolve() for path in args.requirements]
        print(build_layer(requirements, LayerTarget(args.runtime, args.architecture)))
    except LayerBuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
