"""Native BLAS/LAPACK for Spark MLlib, whose ALS solves its normal equations through dev.ludovic.netlib.

netlib loads a native library through JNI when it can: the system's libblas.so.3/liblapack.so.3,
or the file named by -Ddev.ludovic.netlib.{blas,lapack}.nativeLibPath; otherwise it falls back to
Java (VectorBLAS, F2J LAPACK), 1.2-2x slower for a rank-64 fit on 2 cores. `spark.native_blas`:

- `auto` (default): the system library when the dynamic loader finds one (clusters usually have
  OpenBLAS or MKL installed), else OpenBLAS from the `cmeel-openblas` wheel installed with the
  project (BSD-3-Clause, 17 MB; MKL's wheel is about 10x larger under Intel's licence). That
  library needs the GCC Fortran runtime, libgfortran.so.5; a machine without one gets links to the
  copy numpy's wheel vendors (the same runtime, renamed by auditwheel) in a folder on the JVM's
  LD_LIBRARY_PATH.
- `off`: Java BLAS and LAPACK.
- a path: that BLAS/LAPACK shared library.

OpenBLAS threads are pinned to `spark.blas_threads` (default 1): Spark already runs one task per
core, and each task's solves are small, so more threads only oversubscribe the cores.

A library is only used when a fresh process can load it and run a few BLAS calls on this CPU
(`_runs`): a build for another processor dies of SIGILL there. The cmeel-openblas 0.3.31 wheel is
such a build (its only kernel is SKYLAKEX, AVX-512); on a CPU without AVX-512 a JVM that loads it
dies in `daxpy_k` during an ALS fit, so `auto` then falls back to Java BLAS and says why.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from recsys_spark.errors import RecsysError

log = logging.getLogger("recsys_spark")

SYSTEM = ("libblas.so.3", "liblapack.so.3")
SOURCE_KEY = "spark.recsys.nativeBlasSource"  # where the session's choice came from, kept in its Spark conf
RUNTIME_DIR = Path(sys.prefix) / "lib" / "recsys-spark-blas"  # links to the Fortran runtime, inside the venv


@dataclass(frozen=True)
class NativeBlas:
    """What the JVMs are told: the library (None: netlib's own search, or off), a folder for the
    loader, and where the choice came from (printed in the summary beside what actually loaded)."""

    source: str  # system, cmeel-openblas, path, off, none found
    library: str | None = None
    loader_dir: str | None = None

    def java_options(self) -> str:
        if self.source == "off":  # an impossible path: netlib then uses Java
            return (
                "-Ddev.ludovic.netlib.blas.nativeLibPath=/nonexistent "
                "-Ddev.ludovic.netlib.lapack.nativeLibPath=/nonexistent"
            )
        if not self.library:
            return ""
        return (
            f"-Ddev.ludovic.netlib.blas.nativeLibPath={self.library} "
            f"-Ddev.ludovic.netlib.lapack.nativeLibPath={self.library}"
        )


# Runs daxpy and dgemm on arrays long enough for the wide (AVX2/AVX-512) kernels and checks every
# element; no core file if the library dies of SIGILL.
_RUN = """
import ctypes, resource, sys
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
b = ctypes.CDLL(sys.argv[1])
n, one, i = 4099, ctypes.c_double(1.0), ctypes.byref(ctypes.c_int(1))
x, y = (ctypes.c_double * n)(*range(n)), (ctypes.c_double * n)()
b.daxpy_(ctypes.byref(ctypes.c_int(n)), ctypes.byref(ctypes.c_double(2.0)), x, i, y, i)
m, k = ctypes.byref(ctypes.c_int(64)), 64 * 64
a, c = (ctypes.c_double * k)(*([1.0] * k)), (ctypes.c_double * k)()
no, zero = ctypes.c_char(b"N"), ctypes.c_double(0.0)
b.dgemm_(ctypes.byref(no), ctypes.byref(no), m, m, m, ctypes.byref(one), a, m, a, m, ctypes.byref(zero), c, m)
ok = all(y[j] == 2.0 * j for j in range(n)) and all(v == 64.0 for v in c)
sys.exit(0 if ok else 3)
"""


def _loads(library: str, loader_dir: str | None = None, run: bool = False) -> bool:
    """Whether a fresh process can dlopen `library` (with `loader_dir` on LD_LIBRARY_PATH) and, with
    `run`, compute a daxpy and a dgemm with it: a build for another CPU loads, then dies of SIGILL."""
    env = dict(os.environ)
    if loader_dir:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (loader_dir, env.get("LD_LIBRARY_PATH")) if p)
    probe = _RUN if run else "import ctypes, sys; ctypes.CDLL(sys.argv[1])"
    try:
        done = subprocess.run([sys.executable, "-c", probe, library], env=env, capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def wheel_openblas() -> Path | None:
    """libopenblas.so.0 of the installed cmeel-openblas wheel, if any."""
    try:
        files = importlib.metadata.files("cmeel-openblas") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    return next((Path(f.locate()) for f in files if f.name == "libopenblas.so.0"), None)


def fortran_runtime_dir() -> Path | None:
    """A folder holding libgfortran.so.5 (and what it needs) as links to numpy's vendored copy."""
    import numpy

    vendored = Path(numpy.__file__).parent.parent / "numpy.libs"
    gfortran = sorted(vendored.glob("libgfortran-*.so.5*"))
    if not gfortran:
        return None
    links = {"libgfortran.so.5": gfortran[0], **{p.name: p for p in vendored.glob("libquadmath-*.so*")}}
    for folder in (
        RUNTIME_DIR,
        Path(tempfile.gettempdir()) / f"recsys-spark-blas-{os.getuid()}",
    ):  # a read-only venv: /tmp
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for name, target in links.items():  # the vendored copy finds its own libquadmath by name in the same folder
                link = folder / name
                if link.is_symlink() and not link.exists():  # numpy was upgraded: the old copy is gone
                    link.unlink(missing_ok=True)
                if not link.exists():
                    try:
                        link.symlink_to(target)
                    except FileExistsError:  # another process made it first
                        pass
            return folder
        except OSError:
            continue
    return None


def resolve(setting: str) -> NativeBlas:
    """Which native library `spark.native_blas` means on this machine (YAML reads a bare `off` as
    false, so `false` means off too)."""
    if setting in ("off", "false"):
        return NativeBlas("off")
    if setting != "auto":
        if not Path(setting).is_file():
            raise RecsysError(
                f"spark.native_blas={setting!r} is not a file: give a BLAS/LAPACK shared library (e.g. "
                "/usr/lib/x86_64-linux-gnu/libopenblas.so.0), auto, or off"
            )
        return NativeBlas("path", setting)
    if _loads(SYSTEM[0], run=True) and _loads(SYSTEM[1]):
        return NativeBlas("system")
    lib = wheel_openblas()
    if lib is None:
        return NativeBlas("none found")
    loader_dir = None
    if not _loads(str(lib)):
        runtime = fortran_runtime_dir()
        if not (runtime and _loads(str(lib), str(runtime))):
            return NativeBlas("none found")
        loader_dir = str(runtime)
    if not _loads(str(lib), loader_dir, run=True):
        log.warning(
            "[blas] %s loads but cannot run on this CPU (a build for another processor, e.g. AVX-512 only): ALS "
            "uses Java BLAS; install the system's OpenBLAS (apt-get install libopenblas0-pthread) for native speed",
            lib,
        )
        return NativeBlas("none found")
    return NativeBlas("cmeel-openblas", str(lib), loader_dir)


def loaded(spark) -> dict[str, str]:  # a SparkSession; typed loosely to keep this module Spark-free
    """What the driver JVM actually uses (e.g. blas JNIBLAS, lapack JNILAPACK), the configured
    source, and the OpenBLAS thread count: the summary line and the MLflow tags."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext.getConf()
    return {
        "blas": jvm.dev.ludovic.netlib.blas.BLAS.getInstance().getClass().getSimpleName(),
        "lapack": jvm.dev.ludovic.netlib.lapack.LAPACK.getInstance().getClass().getSimpleName(),
        "blas_source": conf.get(SOURCE_KEY, "unknown"),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
    }


def describe(spark) -> str:
    """The summary line; on a cluster it also says what the executors that ran a probe task use."""
    got = loaded(spark)
    line = (
        f"BLAS {got['blas']}, LAPACK {got['lapack']} "
        f"(native_blas: {got['blas_source']}, OpenBLAS threads {got['blas_threads']})"
    )
    if spark.sparkContext.master.startswith("local"):
        return line  # the driver's JVM runs every task
    seen = executors(spark)
    kinds = sorted({f"{e['blas']}/{e['lapack']}, OpenBLAS threads {e['blas_threads']}" for e in seen})
    return f"{line}; executors ({len(seen)} probed): {'; '.join(kinds)}"


def executors(spark, tasks: int = 8) -> list[dict[str, str]]:
    """What the executor JVMs use, asked inside `tasks` tasks through Spark SQL's `reflect` (it runs
    in the executor's JVM, no Python worker): one row per executor process, with its pid, BLAS,
    LAPACK and OpenBLAS thread count. In local mode the one row is the driver's JVM. The rows are
    one per executor, not per event or user, so they are collected."""
    probe = (
        spark.range(0, tasks, 1, tasks)
        .selectExpr(
            "reflect('java.lang.ProcessHandle', 'current') AS pid",
            "reflect('dev.ludovic.netlib.blas.BLAS', 'getInstance') AS blas",
            "reflect('dev.ludovic.netlib.lapack.LAPACK', 'getInstance') AS lapack",
            "coalesce(reflect('java.lang.System', 'getenv', 'OPENBLAS_NUM_THREADS'), 'unset') AS blas_threads",
        )
        .distinct()
    )

    def simple(obj):  # dev.ludovic.netlib.blas.JNIBLAS@1a2b -> JNIBLAS
        return obj.split("@")[0].rsplit(".", 1)[-1]

    return sorted(
        (
            {"pid": r.pid, "blas": simple(r.blas), "lapack": simple(r.lapack), "blas_threads": r.blas_threads}
            for r in probe.collect()
        ),
        key=lambda r: r["pid"],
    )
