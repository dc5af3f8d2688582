"""Imports point one way (docs/architecture.md): each getkern module belongs to a layer and imports only
its own layer and the ones below; core modules import at the top (function-level imports are for
optional packages), so a cycle cannot hide inside a function. Checked statically over getkern/ with ast,
nothing is imported.

Outside the layers: developer tools (getkern/tools) and scripts (getkern/assets, getkern/csrc) may import
any layer; only the commands and the tools import the tools, nothing imports the scripts. The commands
defer their imports into ``run`` so ``getkern --help`` imports no torch (tests/test_cli.py), and the tools
may defer theirs too."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "getkern"

# Lowest first: a module may import its own layer and those before it.
LAYERS = (
    ("foundation", ("getkern", "getkern.errors", "getkern._lazy", "getkern.runlock")),  # torch-free
    ("runtime", ("getkern._backend", "getkern._extension", "getkern._traffic", "getkern.distributed")),
    ("ops", ("getkern.ops",)),
    ("nn", ("getkern.nn",)),
    ("deq", ("getkern.deq",)),
    ("checkpoint", ("getkern.checkpoint",)),
    ("models", ("getkern.models",)),
    ("loading", ("getkern.loading", "getkern.sampling", "getkern.images")),
    ("teacher", ("getkern.teacher",)),
    ("data", ("getkern.data",)),
    ("metrics", ("getkern.metrics",)),
    ("distill", ("getkern.distill",)),
    ("profiling", ("getkern.profiling",)),
    ("apps", ("getkern.apps",)),
    ("commands", ("getkern.commands", "getkern.cli", "getkern.__main__")),
)
TOOLS = ("getkern.tools",)  # may import anything; imported by commands and tools only
SCRIPTS = ("getkern.assets", "getkern.csrc")  # may import anything; imported by nothing
DEFERRING = ("commands",)  # layers whose functions may import anything (besides TOOLS)

# Packages a core module may import inside a function: optional ones (a missing one fails only the
# feature that needs it) and triton, which is absent off Linux x86_64.
OPTIONAL = frozenset(
    {"matplotlib", "huggingface_hub", "lpips", "sklearn", "PIL", "dnnlib", "torch_utils", "training", "triton"}
)
# Required modules deferred on purpose, with the reason.
DEFERRED = {
    "torch.utils.cpp_extension": "importing it costs about 0.5 s and logs a CUDA_HOME warning; "
    "only a build of the C++ extension needs it"
}


@dataclass(frozen=True)
class Import:
    line: int
    target: str  # the imported module, resolved to a getkern submodule where it names one
    in_function: bool


def module_name(path: Path, root: Path) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_imports(path: Path, module: str, modules: set[str]) -> list[Import]:
    """Every import statement of ``path`` (module ``module``), relative ones resolved."""
    is_package = path.name == "__init__.py"
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(child.lineno, a.name, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = module.split(".")[: len(module.split(".")) - child.level + is_package]
                    base = ".".join(package + ([child.module] if child.module else []))
                for alias in child.names:  # `from getkern import deq` imports the module getkern.deq
                    sub = f"{base}.{alias.name}"
                    ours = base.split(".")[0] == module.split(".")[0]
                    found.append(Import(child.lineno, sub if sub in modules or not ours else base, in_function))
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def _group(module: str, groups) -> str | None:
    best = None
    for name, prefixes in groups:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[1])):
                best = (name, prefix)
    return best and best[0]


def violations(
    root: Path, layers=LAYERS, tools=TOOLS, scripts=SCRIPTS, deferring=DEFERRING, optional=OPTIONAL, deferred=DEFERRED
) -> list[str]:
    """``file:line: message`` for every import that breaks the rules in this file's docstring."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    order = {name: i for i, (name, _) in enumerate(layers)}
    groups = [*layers, ("tools", tools), ("scripts", scripts)]
    package = root.name
    out = []
    for module, path in files.items():
        where = f"{path.relative_to(root.parent)}"
        mine = _group(module, groups)
        if mine is None:
            out.append(f"{where}:1: module {module} is in no layer (add it to LAYERS)")
            continue
        for imp in read_imports(path, module, set(files)):
            target_is_ours = imp.target == package or imp.target.startswith(package + ".")
            if target_is_ours:
                theirs = _group(imp.target, groups)
                if theirs == "scripts" and mine != "scripts":
                    out.append(f"{where}:{imp.line}: {module} imports the script {imp.target}")
                elif theirs == "tools" and mine not in ("tools", "scripts", *deferring):
                    out.append(f"{where}:{imp.line}: {module} ({mine}) imports the developer tool {imp.target}")
                elif mine in order and theirs in order and order[theirs] > order[mine]:
                    out.append(
                        f"{where}:{imp.line}: {module} ({mine}) imports {imp.target} of the higher layer {theirs}"
                    )
            if not imp.in_function or mine not in order or mine in deferring:
                continue
            if target_is_ours:
                out.append(
                    f"{where}:{imp.line}: function-level import of {imp.target} in {module} ({mine}): "
                    "import it at the top"
                )
            elif imp.target.split(".")[0] not in optional and not any(
                imp.target == d or imp.target.startswith(d + ".") for d in deferred
            ):
                out.append(
                    f"{where}:{imp.line}: function-level import of {imp.target} in {module} ({mine}): "
                    "a required or standard module goes to the top (optional packages: "
                    f"{', '.join(sorted(optional))})"
                )
    return list(dict.fromkeys(out))  # one line per finding, not per imported name


def test_imports_point_one_way():
    found = violations(ROOT)
    assert not found, "import layering broken (docs/architecture.md):\n" + "\n".join(found)


def test_every_layer_names_existing_modules():
    files = {module_name(p, ROOT) for p in ROOT.rglob("*.py")}
    for name, prefixes in (*LAYERS, ("tools", TOOLS), ("scripts", SCRIPTS)):
        for prefix in prefixes:
            assert any(f == prefix or f.startswith(prefix + ".") for f in files), f"{name}: {prefix} is gone"


# ---------------------------------------------------------------- the checker itself, on a made-up package


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


SMALL = dict(
    layers=(("low", ("pkg", "pkg.low")), ("high", ("pkg.high",)), ("cmd", ("pkg.cmd",))),
    tools=("pkg.tools",),
    scripts=("pkg.scripts",),
    deferring=("cmd",),
    optional=frozenset({"optpkg"}),
    deferred={"json.decoder": "a reason"},
)


def test_checker_accepts_a_package_that_keeps_the_rules(tmp_path):
    root = _write(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "low.py": "import json\n",
            "high/__init__.py": "from pkg import low\nfrom . import util\n",
            "high/util.py": "from ..low import json\n\ndef f():\n    import optpkg.sub\n    import json.decoder\n",
            "cmd.py": "def run():\n    import torch\n    from pkg.tools import t\n    from pkg import high\n",
            "tools/t.py": "from pkg.cmd import run\n\ndef g():\n    import os\n",
            "scripts/s.py": "from pkg.tools import t\n",
        },
    )
    assert violations(root, **SMALL) == []


def test_checker_finds_each_kind_of_violation(tmp_path):
    root = _write(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "low.py": "from pkg.high import util\n",  # upward, module level
            "high/__init__.py": "",
            "high/util.py": (
                "import os\n\ndef f():\n    from pkg import low\n"  # a getkern module in a function
                "    import json\n"  # a standard module in a function
                "    lambda: __import__('x')\n"
                "    from pkg.tools import t\n"  # a tool from the core
                "    from . import other\n"
            ),  # relative, in a function
            "high/other.py": "class A:\n    def m(self):\n        from .. import cmd\n",  # upward, in a method
            "cmd.py": "from pkg.scripts import s\n",  # a script imported
            "tools/t.py": "",
            "scripts/s.py": "",
            "stray.py": "",  # in no layer
        },
    )
    found = violations(root, **{**SMALL, "layers": (("low", ("pkg.low", "pkg.__init__")), *SMALL["layers"][1:])})
    text = "\n".join(found)
    expected = [
        "pkg/low.py:1: pkg.low (low) imports pkg.high.util of the higher layer high",
        "pkg/high/util.py:4: function-level import of pkg.low in pkg.high.util",
        "pkg/high/util.py:5: function-level import of json in pkg.high.util",
        "pkg/high/util.py:7: pkg.high.util (high) imports the developer tool pkg.tools.t",
        "pkg/high/util.py:7: function-level import of pkg.tools.t in pkg.high.util",
        "pkg/high/util.py:8: function-level import of pkg.high.other in pkg.high.util",
        "pkg/high/other.py:3: pkg.high.other (high) imports pkg.cmd of the higher layer cmd",
        "pkg/high/other.py:3: function-level import of pkg.cmd",
        "pkg/cmd.py:1: pkg.cmd imports the script pkg.scripts.s",
        "pkg/stray.py:1: module pkg.stray is in no layer",
        "pkg/__init__.py:1: module pkg is in no layer",
    ]
    for line in expected:
        assert line in text, f"not reported: {line}\n(got)\n{text}"
    assert len(found) == len(expected), text


if __name__ == "__main__":  # python tests/test_layering.py: the violations, one a line
    print("\n".join(violations(ROOT)) or "no violations")
