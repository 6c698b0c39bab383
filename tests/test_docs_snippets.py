"""Every ```python block of README.md and docs/*.md runs as written.

The blocks of one file run in order in one namespace, as a reader would run them top to
bottom (a later block may use names an earlier one defined), in a temporary working
directory, with matplotlib's non-interactive Agg backend.

Markers, on the first line of a block:

- ``# fragment``: the block is not run (a piece of code that needs the reader's own data,
  e.g. a signature or a call on a remote cluster). Use it sparingly: a fragment can rot.
- ``# warns: SomeWarning``: the block must raise that warning (a class from builtins,
  ``warnings`` or ``sklearn.exceptions``).
- ``# script``: the block is a whole script (e.g. one that starts worker processes, which
  import it again): it is saved to a file and run with ``python file.py`` on its own.

Any other warning a block raises is a test failure, so that a snippet never shows a reader a
wall of warnings.
"""

import builtins
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import sklearn.exceptions

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
MARKDOWN = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("docs/*.md"))]
# The files with python blocks (docs/user_guide.md, for one, has none).
DOCUMENTS = [name for name in MARKDOWN if FENCE.search((ROOT / name).read_text(encoding="utf-8"))]
FRAGMENT = "# fragment"
SCRIPT = "# script"
WARNS = re.compile(r"#\s*warns:\s*(\w+)\s*$")


def python_blocks(text):
    """``(line, source)`` of each ```python block: the line its code starts on, its code."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


def expected_warning(source):
    """The warning class a block's ``# warns:`` marker names, or None."""
    match = WARNS.match(source.split("\n", 1)[0])
    if match is None:
        return None
    name = match.group(1)
    for namespace in (builtins, warnings, sklearn.exceptions):
        if isinstance(getattr(namespace, name, None), type):
            return getattr(namespace, name)
    raise AssertionError(f"# warns: {name} names no known warning class")


def test_the_extractor_finds_blocks_and_markers():
    text = (
        "intro\n```python\na = 1\n```\n\n```bash\nls\n```\n"
        "```python\n# fragment\nundefined()\n```\n"
        "```python\n# warns: UserWarning\nimport warnings\n```\n"
    )
    blocks = python_blocks(text)
    assert [line for line, _ in blocks] == [3, 10, 14]
    assert blocks[0][1] == "a = 1\n" and blocks[1][1].startswith(FRAGMENT)
    assert expected_warning(blocks[2][1]) is UserWarning
    assert expected_warning(blocks[0][1]) is None
    assert (
        expected_warning("# warns: ConvergenceWarning\n") is sklearn.exceptions.ConvergenceWarning
    )


def run_as_a_script(source, directory, where):
    path = directory / "snippet.py"
    path.write_text(source, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(path)], cwd=directory, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{where} failed as a script:\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("document", DOCUMENTS)
def test_python_blocks_run(document, tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = python_blocks((ROOT / document).read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)  # snippets may write files (fit.png, ...)
    namespace = {"__name__": "__main__"}
    try:
        for line, source in blocks:
            if source.startswith(FRAGMENT):
                continue
            where = f"{document}, the python block starting at line {line}"
            if source.startswith(SCRIPT):
                run_as_a_script(source, tmp_path, where)
                continue
            code = compile(source, f"{document}:{line}", "exec")
            expected = expected_warning(source)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                exec(code, namespace)
            unexpected = [
                w for w in caught if expected is None or not issubclass(w.category, expected)
            ]
            assert not unexpected, f"{where} raised warnings:\n" + "\n".join(
                f"  {w.category.__name__}: {w.message}" for w in unexpected
            )
            if expected is not None:
                assert caught, f"{where} should raise a {expected.__name__}"
    finally:
        plt.close("all")


def test_the_documents_with_python_blocks_are_found():
    assert {"README.md", "docs/index.md", "docs/choosing_k.md", "docs/scaling.md"} <= set(DOCUMENTS)
    n_run = sum(
        not source.startswith(FRAGMENT)
        for name in DOCUMENTS
        for _, source in python_blocks((ROOT / name).read_text(encoding="utf-8"))
    )
    assert n_run >= 10


def test_readme_keeps_the_test_command_ci_checks():
    command = (
        'python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && .venv/bin/python -m pytest'
    )
    assert command in (ROOT / "README.md").read_text(encoding="utf-8")
