"""The private scikit-learn names the package relies on, imported in one place.

scikit-learn's own estimators declare their parameters with ``Interval`` and
``StrOptions`` and wrap ``fit`` in ``_fit_context``; neither is public yet.
Should they move, this module is the only one to change.
"""

import sys
import warnings
from pathlib import Path

from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

__all__ = ["Interval", "StrOptions", "fit_context", "warn_at_caller"]

fit_context = _fit_context

_PACKAGE_DIR = str(Path(__file__).resolve().parent)
# Frames of these packages only pass a call on (sklearn's fit context, its
# meta-estimators, joblib's dispatch): a warning points past them.
_PASS_THROUGH = ("sklearn", "joblib")


def _passes_on(filename):
    if filename.startswith(_PACKAGE_DIR):
        return True
    parts = Path(filename).parts
    return any(name in parts for name in _PASS_THROUGH)


def warn_at_caller(message, category=UserWarning):
    """``warnings.warn`` pointing at the first frame outside this package.

    The warning names the user's line whatever the depth of the call inside
    the package (and inside scikit-learn's wrappers), so restructuring the
    code never sends it into the library.
    """
    frame, level = sys._getframe(1), 2
    while frame is not None and _passes_on(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
