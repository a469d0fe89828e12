"""Lazy re-exports for package ``__init__`` modules (PEP 562).

`tawin --help`, `--version` and `config show` must start in well under a second, so importing a
package for one light name (a config Literal, the cut-offs) must not load torch through the
package's other exports. A package lists ``name → submodule`` and resolves each name on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``package.<exports[name]>`` when `name` is first read."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return __getattr__
