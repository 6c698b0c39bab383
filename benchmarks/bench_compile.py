"""The compiled kernel's cost at the first call: compiling, and loading numba's cache.

Run: python benchmarks/bench_compile.py          (about a minute on 2 cores)

The kernel (``skdensityfit._engine.kernel``) is compiled by numba at the first call on a machine,
in two child processes at once (``skdensityfit._engine.compile``), which write numba's cache
(``cache=True``); that process and every later one load it from there. For
three first calls, the write-up's demo (``DensityGMM(2).fit``), a batch (``fit_many`` of
200 noisy 1-D densities) and a choice of K (``DensityGMMCV().fit``), each in a fresh
Python process, this prints the seconds from the start of the process to the end of the
call (imports included):

- ``cold``: an empty cache (a new ``NUMBA_CACHE_DIR``): numba compiles what the call uses;
- ``warm``: a second process on the same cache: numba loads it.

Targets (issue #26): cold <= 10 s, warm <= 1 s. The same calls without numba's work
(``plain``: the call repeated in the warm process) show what the fit itself costs.

Where the cache goes: next to the package's sources (``skdensityfit/__pycache__``) when
that directory is writable, else numba's user-wide cache directory (``$XDG_CACHE_HOME``
or ``~/.cache``, under ``numba``), or ``NUMBA_CACHE_DIR`` when it is set. The last part
of this benchmark makes the package's directory unwritable to numba (simulated: as root
every directory is writable) and checks that a first and a second process both run and
that the second loads the cache the first wrote under ``$XDG_CACHE_HOME/numba``.
"""

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]

CALLS = {
    "demo": """
        from skdensityfit import DensityGMM, make_writeup_problem
        grid, density, _ = make_writeup_problem()
        DensityGMM(n_components=2, random_state=0).fit(grid, density)
    """,
    "batch": """
        import numpy as np
        from skdensityfit import DensityGMM, fit_many
        from skdensityfit._examples import mixture_densities_1d
        rng = np.random.default_rng(0)
        grid = np.linspace(-5.0, 25.0, 200)
        means = rng.uniform(3.0, 17.0, (200, 2))
        Y = mixture_densities_1d(grid, np.full((200, 2), 0.5), means, np.ones((200, 2)))
        Y = Y + 0.02 * Y.max() * rng.normal(size=Y.shape)
        fit_many(grid, Y, DensityGMM(2, random_state=0))
    """,
    "cv": """
        import numpy as np
        from skdensityfit import DensityGMMCV, make_writeup_problem
        grid, density, _ = make_writeup_problem()
        noisy = density + 0.01 * density.max() * np.random.default_rng(0).normal(size=density.size)
        DensityGMMCV(random_state=0).fit(grid, noisy)
    """,
}


# A package directory numba cannot write to (what it finds when it tries to write a
# temporary file there). Only root runs here, which writes anywhere: the refusal is
# simulated (a sitecustomize module, so that the processes that compile the kernel see
# it too), numba's fallback to the user-wide cache is its own code.
READ_ONLY = """
import numba.core.caching as caching
def _refuse(self):
    raise PermissionError("read-only site-packages (simulated)")
caching.InTreeCacheLocator.ensure_cache_path = _refuse
"""


def _script(call, repeat):
    body = textwrap.dedent(CALLS[call])
    lines = [
        "import sys, time, warnings",
        # an editable install's import hook would take the package from the checkout
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]",
        "sys.path[:] = [p for p in sys.path if 'editable' not in p.lower()]",
        "warnings.simplefilter('ignore')",
        "start = time.perf_counter()",
        "import skdensityfit",
        "imported = time.perf_counter() - start",
        "start = time.perf_counter()",
        body,
        "first = time.perf_counter() - start",
    ]
    if repeat:
        lines += ["start = time.perf_counter()", body, "plain = time.perf_counter() - start"]
    else:
        lines += ["plain = float('nan')"]
    lines.append("print(skdensityfit.__file__, imported, first, plain)")
    return "\n".join(lines)


def _run(call, env, repeat=False):
    # ``(package file, import seconds, first call seconds, repeated call seconds)``
    output = subprocess.run(
        [sys.executable, "-c", _script(call, repeat)],
        env=env,
        cwd=tempfile.gettempdir(),  # not the checkout, which "-c" would put first on sys.path
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return output[-4], float(output[-3]), float(output[-2]), float(output[-1])


def main():
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, package at {REPOSITORY}")
    print(
        f"{'call':<8}{'import (s)':>11}{'cold call (s)':>14}{'warm call (s)':>14}"
        f"{'fit alone (s)':>14}"
    )
    worst_cold = worst_warm = 0.0
    for call in CALLS:
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(REPOSITORY)}
            _, _, cold, _ = _run(call, env)
            _, imported, warm, plain = _run(call, env, repeat=True)
        worst_cold, worst_warm = max(worst_cold, cold), max(worst_warm, warm)
        print(f"{call:<8}{imported:>11.2f}{cold:>14.2f}{warm:>14.2f}{plain:>14.3f}")
    print(
        f"targets (the call, the import aside): cold <= 10 s "
        f"({'met' if worst_cold <= 10 else 'NOT met'}: {worst_cold:.1f}), warm <= 1 s "
        f"({'met' if worst_warm <= 1 else 'NOT met'}: {worst_warm:.2f})"
    )

    # a read-only installation: the cache goes to the user-wide directory
    with tempfile.TemporaryDirectory() as root:
        user_cache = Path(root) / "user-cache"
        Path(root, "sitecustomize.py").write_text(READ_ONLY)
        path = os.pathsep.join([root, str(REPOSITORY)])
        env = {**os.environ, "PYTHONPATH": path, "XDG_CACHE_HOME": str(user_cache)}
        env.pop("NUMBA_CACHE_DIR", None)
        _, _, cold, _ = _run("demo", env)
        _, _, warm, _ = _run("demo", env)
        written = sorted(user_cache.rglob("*.nbi"))
        print(
            f"read-only package (simulated): first call {cold:.2f} s, in a second process "
            f"{warm:.2f} s; {len(written)} cache index files under $XDG_CACHE_HOME/numba "
            f"({'the cache works' if written and warm <= 1 else 'NO cache'})"
        )


if __name__ == "__main__":
    main()
