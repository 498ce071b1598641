"""Wheels the GPU machine lacks, carried with the working tree instead of installed.

The lent GPU machine comes with jax (CUDA), flax, optax, numpy, scipy, pyyaml, matplotlib and tqdm,
but not pydantic, which ``jax_ec.config`` (and so the suite's end-to-end parts) imports, and it
has no network. So, on a machine that reaches the package registry, download the wheels of
:data:`PACKAGES` for every CPython of :data:`PYTHONS` and both Linux architectures into the
git-ignored folder ``.device_wheels/``::

    python -m benchmarks.device_wheels            # about 20 MB

and carry that folder with the working tree to the GPU machine (``carry: [".device_wheels"]``).
There ``python -m benchmarks.suite`` calls :func:`activate` first: when pydantic does not import,
it unzips the wheels that fit the running interpreter (pure-Python ones and the compiled
``pydantic_core`` of this CPython and machine) into a temporary folder and puts that folder first
on ``sys.path`` and on the parts' ``PYTHONPATH``. Nothing is installed; a wheel is a zip archive of
the files an install would copy.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS_DIR = ROOT / ".device_wheels"
# What the GPU image lacks (module that must import -> pip requirement, pinned to this machine's
# installed version when there is one, so the device runs what the tests ran).
PACKAGES: dict[str, str] = {"pydantic": "pydantic"}
PYTHONS: tuple[str, ...] = ("3.10", "3.11", "3.12", "3.13", "3.14")
PLATFORMS: tuple[str, ...] = ("manylinux2014_x86_64", "manylinux2014_aarch64")


def _requirement(pip_name: str) -> str:
    from importlib import metadata
    try:
        return f"{pip_name}=={metadata.version(pip_name)}"
    except metadata.PackageNotFoundError:
        return pip_name


def download(dest: Path = WHEELS_DIR, pythons: tuple[str, ...] = PYTHONS,
             platforms: tuple[str, ...] = PLATFORMS) -> list[Path]:
    """Download binary wheels of :data:`PACKAGES` (and their dependencies) for every (Python,
    platform) pair into ``dest``; a pair the registry has no wheel for is reported and skipped."""
    dest.mkdir(parents=True, exist_ok=True)
    reqs = [_requirement(p) for p in PACKAGES.values()]
    for py in pythons:
        for plat in platforms:
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(dest),
                   "--python-version", py, "--implementation", "cp", "--platform", plat, *reqs]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                print(f"[device_wheels] no wheels for CPython {py} on {plat}: {proc.stderr.strip()[-300:]}")
    return sorted(dest.glob("*.whl"))


def _tags(wheel: str) -> tuple[str, str, str, str]:
    """``(distribution, python tag, abi tag, platform tag)`` of a wheel file name (PEP 427)."""
    parts = wheel[:-len(".whl")].split("-")
    return parts[0].lower().replace("_", "-"), parts[-3], parts[-2], parts[-1]


def fits(wheel: str, version: tuple[int, int] | None = None, machine: str | None = None) -> bool:
    """Whether the wheel ``wheel`` (a file name) installs on CPython ``version`` on ``machine``
    (default: the running interpreter): a pure-Python wheel (``py3-none-any``), or a wheel for this
    CPython (``cpXY-cpXY``, or ``abi3`` from an older or equal ``cpXY``) built for this machine."""
    version = version or sys.version_info[:2]
    machine = (machine or platform.machine()).lower()
    _, py, abi, plat = _tags(wheel)
    if plat == "any":
        return any(t in ("py3", f"py{version[0]}{version[1]}") for t in py.split("."))
    if machine not in plat.lower() or "linux" not in plat.lower():
        return False
    here = f"cp{version[0]}{version[1]}"
    if abi == "abi3":
        return any(t.startswith("cp3") and int(t[3:]) <= version[1] for t in py.split("."))
    return here in py.split(".") and abi == here


def unpack(wheels: Path, target: Path, version: tuple[int, int] | None = None,
           machine: str | None = None) -> list[str]:
    """Unzip into ``target`` one fitting wheel per distribution from the folder ``wheels``;
    returns the wheel file names used (for the record)."""
    chosen: dict[str, Path] = {}
    for whl in sorted(wheels.glob("*.whl")):
        if fits(whl.name, version, machine):
            chosen.setdefault(_tags(whl.name)[0], whl)
    target.mkdir(parents=True, exist_ok=True)
    for whl in chosen.values():
        with zipfile.ZipFile(whl) as z:
            z.extractall(target)
    return sorted(w.name for w in chosen.values())


def activate(wheels: Path = WHEELS_DIR, modules: tuple[str, ...] = tuple(PACKAGES)) -> Path | None:
    """When one of ``modules`` does not import and ``wheels`` holds wheels, unpack the fitting ones
    into a temporary folder, put it first on ``sys.path`` and return it (the caller adds it to its
    subprocesses' ``PYTHONPATH``); else return None and change nothing."""
    import importlib
    import importlib.util
    if all(importlib.util.find_spec(m) is not None for m in modules) or not any(wheels.glob("*.whl")):
        return None
    site = Path(tempfile.mkdtemp(prefix="jax_ec_device_wheels_"))
    used = unpack(wheels, site)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    print(f"[device_wheels] {', '.join(modules)} missing here; using {len(used)} carried wheel(s) from {wheels} "
          f"in {site}: {', '.join(used)}")
    return site


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default=str(WHEELS_DIR), help="folder for the wheels (default .device_wheels/)")
    args = parser.parse_args(argv)
    got = download(Path(args.dest))
    size = sum(w.stat().st_size for w in got)
    print(f"[device_wheels] {len(got)} wheels, {size / 2**20:.1f} MiB, in {args.dest}")
    return 0 if got else 1


if __name__ == "__main__":
    sys.exit(main())
