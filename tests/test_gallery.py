"""Every gallery example (docs/examples/plot_*.py) runs to the end, headless, and draws.

Each figure must have no empty panel (every Axes shows lines, collections,
patches or images), and every estimator the example fitted must have
converged.
"""

import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[1] / "docs" / "examples").glob("plot_*.py"))


@pytest.mark.skipif(not EXAMPLES, reason="the docs/examples directory is not here")
@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_runs(path, tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)  # whatever an example writes lands here
    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: None)
    try:
        namespace = runpy.run_path(str(path), run_name="__main__")
        assert plt.get_fignums(), f"{path.name} drew no figure"
        for number in plt.get_fignums():
            for ax in plt.figure(number).axes:
                drawn = ax.lines or ax.collections or ax.patches or ax.images
                assert drawn, f"{path.name}: figure {number} has an empty panel"
        fitted = [
            getattr(value, "best_estimator_", value)
            for value in namespace.values()
            if hasattr(value, "converged_") or hasattr(value, "best_estimator_")
        ]
        assert all(model.converged_ for model in fitted if hasattr(model, "converged_"))
    finally:
        plt.close("all")
