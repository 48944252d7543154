"""Lazy package exports: a name is imported from its submodule on first access (keeps imports fast)."""

import importlib


def lazy_exports(package: str, exports: dict, namespace: dict):
    """A module-level __getattr__ for `package` resolving exports {name: module}; a module name starting
    with "." is relative to `package`. Resolved values are cached in the package's namespace."""

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = exports[name]
        value = getattr(importlib.import_module(module, package if module.startswith(".") else None), name)
        namespace[name] = value
        return value

    return __getattr__
