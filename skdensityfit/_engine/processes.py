"""The kernel's compiled code: compiled in child processes into numba's cache, loaded from it.

A process that compiles a numba function runs the code LLVM made for numba's JIT; one that
loads it from the cache runs the object code written there, and under fast-math the two
differ in the last bits (``benchmarks/results/cache_determinism.txt``), which can change a
chosen K. :class:`CacheCode` wraps each entry point of :mod:`.kernel` so that every process
runs the cache's code: the first entry point found missing has child processes compile
them all (:mod:`.compile`), and each process loads what they wrote.
"""

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numba

# Set in the child processes that compile the kernel (they compile in-process).
COMPILING = "SKDENSITYFIT_COMPILING"
# Compiles the entry points at their usual argument types in a child process (:mod:`.compile`).
_COMPILE_PART = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from {__name__.rpartition(".")[0]}.compile import compile_part
compile_part(*sys.argv[1:])
"""
# Compiles one function of a module at one signature in a child process.
_COMPILE_ONE = """
import importlib.util, pickle, sys
spec = importlib.util.spec_from_file_location(sys.argv[1], sys.argv[2])
module = importlib.util.module_from_spec(spec)
sys.modules[sys.argv[1]] = module
spec.loader.exec_module(module)
getattr(module, sys.argv[3]).compile(pickle.loads(sys.stdin.buffer.read()))
"""
_CHILDREN = {"tried": False, "help": True}
# How long the children may take to compile (the whole kernel takes about 20 s).
CHILD_SECONDS = 600.0
IN_PROCESS = (
    "skdensityfit compiles its kernel in this process: child processes could not compile "
    "it into numba's cache (none can be started here, or they failed). Fits are right, but "
    "may differ in the last bits from those of a later process, which loads the cache."
)


def available_cores():
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


def _run_children(commands, stdin=b""):
    """Run ``commands`` as child processes, all at once, for at most ``CHILD_SECONDS``;
    whether they all succeeded. Each child leads a process group of its own, stopped
    whole if it overruns or this process is interrupted."""
    environment = {**os.environ, COMPILING: "1"}
    children = []
    try:
        for command in commands:
            children.append(
                subprocess.Popen(
                    command,
                    env=environment,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + CHILD_SECONDS
        for child in children:
            child.communicate(stdin, timeout=max(deadline - time.monotonic(), 0.0))
    except BaseException as error:  # no child processes here (no Python, none allowed), too slow
        for child in children:
            _stop(child)
        if not isinstance(error, Exception):  # an interrupt: stopped, and passed on
            raise
        return False
    return all(child.returncode == 0 for child in children)


def _stop(child):
    """Kill ``child`` and whatever it started."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (AttributeError, OSError):  # not on every platform, or already gone
        child.kill()
    child.wait()


class CacheCode:
    """An entry point that runs the code numba's cache holds, in every process.

    The first function found missing has children compile every entry point at its
    usual argument types (:mod:`.compile`: with two cores, two processes at once);
    other argument types are compiled one at a time in a child. If
    the children cannot run or do not fill the cache, the kernel is compiled here, with
    a warning. Calls go to a dispatcher that does not compile (no cost a call); new
    argument types take a lock.
    """

    _lock = threading.Lock()

    def __init__(self, dispatcher):
        self._dispatcher = dispatcher
        self._jit = hasattr(dispatcher, "overloads")  # not under NUMBA_DISABLE_JIT
        self._ready = not self._jit

    def __call__(self, *args):
        if self._ready:
            try:
                return self._dispatcher(*args)
            except TypeError:  # no code for these argument types yet
                if not self._jit:
                    raise
        self._load(args)
        return self._dispatcher(*args)

    def _load(self, args):
        dispatcher = self._dispatcher
        with self._lock:
            signature = tuple(numba.typeof(arg) for arg in args)
            if signature not in dispatcher.overloads:
                dispatcher.disable_compile(False)
                if not os.environ.get(COMPILING) and not self._in_cache(signature):
                    if not self._compile_apart(signature):
                        warnings.warn(IN_PROCESS, RuntimeWarning, stacklevel=4)
                dispatcher.compile(signature)  # loads it (compiles it if the children failed)
            dispatcher.disable_compile()
            self._ready = True

    def _in_cache(self, signature):
        # numba has no public call that loads from its cache without compiling on a miss
        dispatcher = self._dispatcher
        return dispatcher._cache.load_overload(signature, dispatcher.targetctx) is not None

    def _compile_apart(self, signature):
        """Have children compile the function at ``signature`` into the cache; whether
        it is there now."""
        if not _CHILDREN["tried"]:
            _CHILDREN["tried"] = True
            if sys.executable:
                parts = [["fit"], ["rest"]] if available_cores() > 1 else [["fit", "rest"]]
                commands = [[sys.executable, "-c", _COMPILE_PART, *part] for part in parts]
                _CHILDREN["help"] = _run_children(commands)
            else:  # an embedded interpreter: no Python to start
                _CHILDREN["help"] = False
            if self._in_cache(signature):
                return True
        if not _CHILDREN["help"]:
            return False
        function = self._dispatcher.py_func
        module = sys.modules[function.__module__]
        arguments = [module.__name__, module.__file__, function.__name__]
        command = [sys.executable, "-c", _COMPILE_ONE, *arguments]
        # children that run but leave the cache empty do not help: no more are started
        _CHILDREN["help"] = _run_children([command], pickle.dumps(signature)) and (
            self._in_cache(signature)
        )
        return _CHILDREN["help"]
