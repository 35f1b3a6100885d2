"""``--with-code``: ship the ForenX modeling code with the weights, so that
``AutoModelForImageTextToText.from_pretrained(path, trust_remote_code=True)`` and
``AutoProcessor.from_pretrained(path, trust_remote_code=True)`` work without ``pip install forenx``.

The configuration, model and processor modules are copied flat into the release folder together
with every ``forenx`` module they import (found by reading their imports, transitively), and each
``from forenx.x import y`` becomes ``from .x import y`` — the relative form transformers'
dynamic-module loader follows to fetch the sibling files. ``auto_map`` entries in config.json and
processor_config.json point the Auto classes at them.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

__all__ = ["AUTO_MAP", "PROCESSOR_AUTO_MAP", "ROOT_MODULES", "bundle_modules", "write_remote_code"]

#: The modules the Auto classes load, and their file names in the release (transformers' naming).
ROOT_MODULES = {
    "forenx.modeling.configuration": "configuration_forenx",
    "forenx.modeling.modeling": "modeling_forenx",
    "forenx.modeling.processing": "processing_forenx",
}
AUTO_MAP = {
    "AutoConfig": "configuration_forenx.ForenXConfig",
    "AutoModel": "modeling_forenx.ForenXModel",
    "AutoModelForImageTextToText": "modeling_forenx.ForenXForConditionalGeneration",
    "AutoProcessor": "processing_forenx.ForenXProcessor",
}
PROCESSOR_AUTO_MAP = {"AutoProcessor": "processing_forenx.ForenXProcessor"}


def _module_file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise RuntimeError(f"cannot find the source of {module}")
    return Path(spec.origin)


def _flat_name(module: str) -> str:
    """File stem of ``module`` in the release: the root modules keep transformers' names, the others
    their last dotted parts joined (``forenx.schema`` -> ``schema``, ``forenx.modeling.fusion`` -> ``fusion``)."""
    if module in ROOT_MODULES:
        return ROOT_MODULES[module]
    parts = module.split(".")[1:]
    return "_".join(parts[1:] if parts[0] == "modeling" and len(parts) > 1 else parts)


def _forenx_imports(tree: ast.AST, module: str) -> list[ast.ImportFrom]:
    """The ``from forenx... import ...`` statements of a module (anywhere in it, functions included)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "forenx" for a in node.names):
            # `import forenx.x` binds the package, which the bundle does not have.
            raise RuntimeError(f"{module} line {node.lineno}: `import forenx...` cannot be bundled; "
                               "use `from forenx.x import name`.")
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] == "forenx":
            target = node.module
            spec = importlib.util.find_spec(target)
            if spec is None or spec.submodule_search_locations is not None:
                raise RuntimeError(f"{module} line {node.lineno}: `from {target} import ...` imports from a "
                                   "package; import from the module that defines the names instead.")
            found.append(node)
    return found


def bundle_modules(roots=tuple(ROOT_MODULES)) -> dict[str, str]:
    """Rewritten source per flat file name, for ``roots`` and every forenx module they import.

    >>> files = bundle_modules()
    >>> {"configuration_forenx", "modeling_forenx", "processing_forenx", "schema", "prompts"} <= set(files)
    True
    >>> "from .configuration_forenx import ForenXConfig" in files["modeling_forenx"]
    True
    >>> any("from forenx" in line for source in files.values() for line in source.splitlines()
    ...     if line.lstrip().startswith("from "))
    False
    """
    sources: dict[str, str] = {}
    pending, seen = list(roots), set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        source = _module_file(module).read_text(encoding="utf-8")
        tree = ast.parse(source)
        lines = source.splitlines(keepends=True)
        # Replace from the bottom so earlier line numbers stay valid.
        for node in sorted(_forenx_imports(tree, module), key=lambda n: n.lineno, reverse=True):
            pending.append(node.module)
            indent = lines[node.lineno - 1][: node.col_offset]
            names = ", ".join(a.name if a.asname is None else f"{a.name} as {a.asname}" for a in node.names)
            lines[node.lineno - 1: node.end_lineno] = [f"{indent}from .{_flat_name(node.module)} import {names}\n"]
        flat = _flat_name(module)
        assert flat not in sources, f"two forenx modules map to {flat}.py"
        sources[flat] = "".join(lines)
    return sources


def _add_auto_map(path: Path, auto_map: dict[str, str]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data["auto_map"] = {**data.get("auto_map", {}), **auto_map}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_remote_code(folder: str | Path) -> list[str]:
    """Copy the bundled modeling code into ``folder`` (a saved model + processor) and add ``auto_map``
    to its config.json and processor_config.json. Returns the file names written."""
    folder = Path(folder)
    written = []
    header = ("# Bundled from the forenx package by `forenx release --with-code`;\n"
              "# imports of other forenx modules were made relative to load with trust_remote_code=True.\n")
    for name, source in sorted(bundle_modules().items()):
        (folder / f"{name}.py").write_text(header + source, encoding="utf-8")
        written.append(f"{name}.py")
    _add_auto_map(folder / "config.json", AUTO_MAP)
    processor_config = folder / "processor_config.json"
    if processor_config.is_file():
        _add_auto_map(processor_config, PROCESSOR_AUTO_MAP)
    return written
