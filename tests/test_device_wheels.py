"""benchmarks.device_wheels: the wheels carried to a bare GPU machine are chosen by the running
interpreter's tags, unpacked without pip, and make a missing module importable."""

from __future__ import annotations

import importlib
import sys
import zipfile

from benchmarks import device_wheels as dw


def _wheel(folder, name: str, files: dict[str, str]):
    with zipfile.ZipFile(folder / name, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return folder / name


def test_a_wheel_fits_only_its_python_and_machine():
    x86 = "pydantic_core-2.50.5-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
    arm = "pydantic_core-2.50.5-cp312-cp312-manylinux2014_aarch64.manylinux_2_17_aarch64.whl"
    assert dw.fits(x86, (3, 12), "x86_64") and not dw.fits(x86, (3, 11), "x86_64")
    assert not dw.fits(x86, (3, 12), "aarch64") and dw.fits(arm, (3, 12), "aarch64")
    assert dw.fits("pydantic-2.14.4-py3-none-any.whl", (3, 10), "x86_64")
    assert not dw.fits("six-1.0-py2-none-any.whl", (3, 12), "x86_64")
    abi3 = "cryptography-44.0-cp39-abi3-manylinux_2_28_x86_64.whl"
    assert dw.fits(abi3, (3, 12), "x86_64") and not dw.fits(abi3, (3, 8), "x86_64")
    assert not dw.fits("numpy-2.0-cp312-cp312-win_amd64.whl", (3, 12), "x86_64")


def test_unpack_takes_one_fitting_wheel_per_distribution(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "fast-1.0-cp311-cp311-manylinux2014_x86_64.whl", {"fast/__init__.py": "KIND = 'cp311'\n"})
    _wheel(wheels, "fast-1.0-cp312-cp312-manylinux2014_x86_64.whl", {"fast/__init__.py": "KIND = 'cp312'\n"})
    _wheel(wheels, "pure-2.0-py3-none-any.whl", {"pure/__init__.py": "X = 1\n"})
    used = dw.unpack(wheels, tmp_path / "site", (3, 12), "x86_64")
    assert used == ["fast-1.0-cp312-cp312-manylinux2014_x86_64.whl", "pure-2.0-py3-none-any.whl"]
    assert (tmp_path / "site" / "fast" / "__init__.py").read_text() == "KIND = 'cp312'\n"


def test_activate_makes_a_missing_module_importable_and_leaves_a_present_one(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "jax_ec_carried_probe-1.0-py3-none-any.whl", {"jax_ec_carried_probe/__init__.py": "VALUE = 42\n"})
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert dw.activate(wheels, ("json",)) is None                       # present: nothing changes
    assert dw.activate(tmp_path / "empty", ("jax_ec_carried_probe",)) is None   # no wheels: nothing to do
    site = dw.activate(wheels, ("jax_ec_carried_probe",))
    assert site is not None and sys.path[0] == str(site)
    try:
        assert importlib.import_module("jax_ec_carried_probe").VALUE == 42
    finally:
        sys.modules.pop("jax_ec_carried_probe", None)
