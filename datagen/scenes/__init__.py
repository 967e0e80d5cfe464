"""Scene families: one module each (``chart``, ``geometry``, ``search``) behind ``base.Family``.

This package's face is light on purpose: the build config validates family names against
``FAMILY_NAMES`` without loading matplotlib, sympy or datasets. The families themselves are in
``registry.FAMILIES``, which checks at import that it holds exactly these names.
"""

from __future__ import annotations

__all__ = ["FAMILY_NAMES"]

FAMILY_NAMES = ("chart", "geometry", "search")
