"""Sphinx configuration of the skdensityfit documentation.

Build (from the project root):
``.venv/bin/pip install -e ".[docs]" && .venv/bin/sphinx-build -W -b html docs docs/_build/html``
"""

import os
import re

import skdensityfit

# The gallery and the plot directive draw without a window.
os.environ.setdefault("MPLBACKEND", "Agg")

project = "skdensityfit"
copyright = "skdensityfit developers"
author = "skdensityfit developers"
version = release = skdensityfit.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "matplotlib.sphinxext.plot_directive",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
# examples/ holds the gallery's sources; sphinx-gallery renders them into auto_examples/.
exclude_patterns = ["_build", "examples"]

# -- API reference (autosummary + numpydoc) ----------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False  # the class template lists the methods
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- Markdown pages (MyST) ---------------------------------------------------
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# -- Gallery (sphinx-gallery) --------------------------------------------------
# Every docs/examples/plot_*.py is executed and rendered with its figures, so new
# examples are picked up without touching this file.
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "NumberOfCodeLinesSortKey",  # the simplest examples first
    "doc_module": ("skdensityfit",),
    "reference_url": {"skdensityfit": None},
    "backreferences_dir": "gen_modules/backreferences",
    "image_scrapers": ("matplotlib",),
    "remove_config_comments": True,
    "download_all_examples": False,
    "show_memory": False,
}

# -- matplotlib plot directive (figures in the prose pages) --------------------
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 100)]

# -- HTML ----------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"skdensityfit {release}"
html_static_path = []
html_theme_options = {
    "description": "Gaussian mixtures fitted to densities known on a grid",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "240px",
}


# -- Docstring text that reST misreads -----------------------------------------
def _literal_trailing_underscore_names(app, what, name, obj, options, lines):
    """``(n_features_in_,)`` in a type is a reST link reference; show it as code instead."""
    lines[:] = [re.sub(r"\((\w+_),\)", r"(``\1``,)", line) for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _literal_trailing_underscore_names)
