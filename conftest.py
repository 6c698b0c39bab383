"""Test-session setup shared by the tests and the doctests of the package."""

import importlib.util
import os

# Figures are drawn without a window, also on machines with a display.
os.environ.setdefault("MPLBACKEND", "Agg")

# The plotting doctest needs the optional matplotlib (in the "test" extra).
collect_ignore = []
if importlib.util.find_spec("matplotlib") is None:
    collect_ignore.append("skdensityfit/_plotting.py")
