"""TensorRT's own Python code, from NVIDIA's binding wheels, for the contract tests (no GPU, no libnvinfer).

The ``tensorrt-cu12-bindings`` / ``tensorrt-cu13-bindings`` wheels on PyPI hold the pure-Python
``tensorrt_bindings/plugin`` package (``tensorrt.plugin``: register/impl/aot_impl and their
validators) next to the native module ``tensorrt.so``, which needs libnvinfer and cannot load here.
This module:

* downloads them (``python tests/tensorrt_wheels.py download``: ``pip download --no-deps``, a few
  MB each) into a cache folder (``$DSLNET_TRT_WHEELS``, default ``~/.cache/dslnet-edge/tensorrt-wheels``);
* reads the names the native module binds: the identifier-like NUL-terminated strings of its
  ``.rodata`` (pybind11 keeps every class, method, enum and enum-member name there as a C string;
  the linker may store one as the tail of a longer one, so a name also counts as bound when it ends
  an identifier or a C++-qualified name there), plus the top-level names of the wheel's ``__init__.py``;
* builds a stand-in for the native core whose attributes exist exactly when that version binds the
  name, so ``tensorrt.plugin`` of that wheel imports and runs its validators for real.

The wheels are never imported from the cache folder directly and nothing of them is committed.
"""

from __future__ import annotations

import ast
import os
import re
import struct
import subprocess
import sys
import types
import zipfile
from functools import cache
from pathlib import Path

#: TensorRT versions checked, and the wheel that holds each one's Python code.
WHEELS = {
    "10.3.0": "tensorrt-cu12-bindings",
    "10.9.0.34": "tensorrt-cu12-bindings",
    "10.16.1.11": "tensorrt-cu12-bindings",
    "11.4.0.106": "tensorrt-cu13-bindings",
}
#: One concrete wheel per version: the wheels are per Python version, and only their Python files and
#: the native module's string table are read, so the CPython 3.11 Linux x86-64 build is used everywhere.
_PIP_PLATFORM = ["--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                 "--only-binary=:all:"]


def cache_dir() -> Path:
    return Path(os.environ.get("DSLNET_TRT_WHEELS") or Path.home() / ".cache" / "dslnet-edge" / "tensorrt-wheels")


def wheel_path(version: str) -> Path | None:
    stem = WHEELS[version].replace("-", "_") + f"-{version}-"
    found = sorted(cache_dir().glob(f"{stem}*.whl"))
    return found[0] if found else None


def missing_reason(version: str) -> str | None:
    """None when the wheel is cached, else the reason to skip (or, in CI, to fail)."""
    if wheel_path(version) is not None:
        return None
    return (f"{WHEELS[version]}=={version} is not in {cache_dir()}; fetch it with: "
            f"python tests/tensorrt_wheels.py download")


def download(versions=None) -> int:
    """``pip download --no-deps`` each missing wheel into :func:`cache_dir`; returns the number that failed."""
    target = cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    failed = 0
    for version in versions or WHEELS:
        if wheel_path(version) is not None:
            continue
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *_PIP_PLATFORM, "-d", str(target),
               f"{WHEELS[version]}=={version}"]
        if subprocess.run(cmd).returncode != 0 or wheel_path(version) is None:
            print(f"could not download {WHEELS[version]}=={version}", file=sys.stderr)
            failed += 1
    return failed


@cache
def extract(version: str) -> Path:
    """The wheel's ``tensorrt_bindings`` Python files, unpacked once under the cache folder."""
    wheel = wheel_path(version)
    if wheel is None:
        raise FileNotFoundError(missing_reason(version))
    root = cache_dir() / "extracted" / version
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.startswith("tensorrt_bindings/") and name.endswith(".py"):
                dest = root / name
                if not dest.is_file():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(zf.read(name))
    return root / "tensorrt_bindings"


def _rodata(blob: bytes) -> bytes:
    """The ``.rodata`` section of a 64-bit little-endian ELF file."""
    if blob[:4] != b"\x7fELF" or blob[4] != 2 or blob[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", blob, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", blob, 0x3A)

    def section(i):
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", blob, shoff + i * shentsize)
        return name, offset, size

    _, names_off, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        if blob[names_off + name:].split(b"\0", 1)[0] == b".rodata":
            return blob[offset:offset + size]
    raise ValueError("no .rodata section")


class Symbols:
    """The names one TensorRT version's Python bindings define."""

    def __init__(self, version: str, identifiers: frozenset[str]):
        self.version = version
        self.identifiers = identifiers
        self._by_last_char: dict[str, list[str]] = {}
        for ident in identifiers:
            self._by_last_char.setdefault(ident[-1], []).append(ident)

    def __contains__(self, name: str) -> bool:
        if name in self.identifiers:
            return True
        return any(ident.endswith(name) for ident in self._by_last_char.get(name[-1:], ()))  # tail-merged string


@cache
def binding_symbols(version: str) -> Symbols:
    wheel = wheel_path(version)
    if wheel is None:
        raise FileNotFoundError(missing_reason(version))
    with zipfile.ZipFile(wheel) as zf:
        so = next(n for n in zf.namelist() if re.fullmatch(r"tensorrt_bindings/tensorrt[^/]*\.so", n))
        rodata = _rodata(zf.read(so))
        init = zf.read("tensorrt_bindings/__init__.py").decode()
    # identifiers, and C++-qualified names ("nvinfer1::IPluginV3", a name pybind11 may share the tail of)
    strings = re.findall(rb"(?<=\x00)[A-Za-z_][A-Za-z0-9_:]*(?=\x00)", b"\0" + rodata)
    names = {m.decode().rsplit("::", 1)[-1] for m in strings}
    names.discard("")
    for node in ast.parse(init).body:  # what the wheel's __init__.py adds in Python (nptype, volume, ...)
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return Symbols(version, frozenset(names))


def init_version(version: str) -> str:
    text = (extract(version) / "__init__.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


# ---------------------------------------------------------------------------------------------
# a stand-in for the native core, shaped by one version's symbols
# ---------------------------------------------------------------------------------------------
class UnboundName(AttributeError):
    pass


class _StubMeta(type):
    """Classes standing in for bound types/enums: an attribute exists when the version binds its name."""

    symbols: Symbols

    def __getattr__(cls, name):
        if name.startswith("__") or name not in cls.symbols:
            raise UnboundName(f"TensorRT {cls.symbols.version} binds no {cls.__name__}.{name}")
        member = _stub_class(name, cls.symbols)
        setattr(cls, name, member)
        return member


class _Stub:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _stub_class(name: str, symbols: Symbols) -> type:
    return _StubMeta(name, (_Stub,), {"symbols": symbols})


class _Logger(_Stub):
    def log(self, severity, msg):
        pass


class _Registry:
    def __init__(self):
        self.creators = {}

    def register_creator(self, creator, namespace):
        self.creators[(creator.name, str(creator.plugin_version), namespace)] = creator
        return True

    def get_creator(self, name, version, namespace=""):
        return self.creators.get((name, str(version), namespace))


class StubTensorRT(types.ModuleType):
    """``tensorrt`` as one version's bindings would present it, minus the native behaviour."""

    def __init__(self, version: str, package_dir: Path):
        super().__init__("tensorrt")
        symbols = binding_symbols(version)
        self.__dict__.update(__version__=init_version(version), __path__=[str(package_dir)], __package__="tensorrt",
                             _symbols=symbols, _registry=_Registry())
        logger = _StubMeta("Logger", (_Logger,), {"symbols": symbols})
        for level in ("VERBOSE", "INFO", "WARNING", "ERROR", "INTERNAL_ERROR"):
            setattr(logger, level, level)
        self.Logger = logger
        self.Dims = _stub_class("Dims", symbols)
        self.Dims.MAX_DIMS = 8
        self.float32, self.float16, self.int32 = (_stub_class(n, symbols) for n in ("float32", "float16", "int32"))
        self.get_plugin_registry = lambda: self._registry

    def __getattr__(self, name):
        if name.startswith("__") or name not in self._symbols:
            raise UnboundName(f"TensorRT {self._symbols.version} binds no tensorrt.{name}")
        value = _stub_class(name, self._symbols)
        setattr(self, name, value)
        return value


def install_stub(version: str) -> StubTensorRT:
    """Put the stand-in at ``sys.modules['tensorrt']`` with the wheel's Python package as its path, so
    ``import tensorrt.plugin`` runs NVIDIA's code of that version. Use in a fresh process."""
    for name in [n for n in sys.modules if n == "tensorrt" or n.startswith("tensorrt.")]:
        del sys.modules[name]
    module = StubTensorRT(version, extract(version))
    sys.modules["tensorrt"] = module
    return module


if __name__ == "__main__":
    if sys.argv[1:] != ["download"]:
        print("usage: python tests/tensorrt_wheels.py download", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(1 if download() else 0)
