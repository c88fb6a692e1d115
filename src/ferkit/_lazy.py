"""Public names a package loads when first used (PEP 562): `ferkit --help` starts without torch."""

from __future__ import annotations

from importlib import import_module, util
from typing import Any, Callable


def lazy_names(package: str, names: dict[str, str], namespace: dict[str, Any]) -> tuple[Callable, Callable]:
    """``__getattr__`` and ``__dir__`` for ``package``: each of ``names`` (name -> submodule) is
    imported from its submodule when first named and kept in ``namespace`` (the package's
    globals); another plain name that is a submodule (``ferkit.weights`` after ``import ferkit``)
    is imported as such; anything else is an AttributeError."""

    def __getattr__(name: str) -> Any:
        if name in names:
            value = getattr(import_module(f".{names[name]}", package), name)
            namespace[name] = value
            return value
        if name.isidentifier() and not name.startswith("__"):
            try:
                found = util.find_spec(f"{package}.{name}") is not None
            except (ImportError, ValueError):
                found = False
            if found:
                return import_module(f".{name}", package)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
