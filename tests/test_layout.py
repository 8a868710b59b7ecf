"""The package's layers (docs/layout.md): core modules flat in utils/, then utils/data/, then
one package per method (utils/mah/, utils/mmhh/), then the report and the index. A module
imports only from its own layer and the layers below it; the two methods never import each
other, and the report imports no method (it reads results files, not training loops)."""
import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UTILS = os.path.join(REPO, "utils")
# what each layer may import, besides itself
ALLOWED = {
    "core": {"core"},
    "data": {"core", "data"},
    "mah": {"core", "data", "mah"},
    "mmhh": {"core", "data", "mmhh"},
    "report": {"core", "data", "report"},
    "index": {"core", "data", "mah", "mmhh", "report", "index"},
}
LONGEST = 450  # lines of a module; metrics.py, the one home of every metric and its conventions, may be longer


def layer(module):
    """The layer of a module name under utils (utils.mah.engine -> mah, utils.runs -> core)."""
    parts = module.split(".")
    if parts[0] != "utils" or len(parts) == 1:
        return None if parts[0] != "utils" else "core"
    if parts[1] in ("data", "mah", "mmhh", "report", "index"):
        return parts[1]
    return "core"


def modules():
    """(module name, path) of every module of the package."""
    found = []
    for top, _, files in os.walk(UTILS):
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(top, f)
                rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                found.append((rel[:-len(".__init__")] if rel.endswith(".__init__") else rel, path))
    return found


def imported(source, module):
    """Every utils module that `source` (the text of `module`) imports, at any depth of the code."""
    names = set()
    package = module if module.endswith("__init__") else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing package
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {n for n in names if n == "utils" or n.startswith("utils.")}


def violations(module, source):
    """The imports of `module` that break the layer rule, as 'module -> imported' lines."""
    mine = layer(module)
    bad = []
    for name in sorted(imported(source, module)):
        theirs = layer(name)
        # `from utils import mah` names a package: its layer is the package's, not core
        if name.count(".") == 1 and name.split(".")[1] in ALLOWED:
            theirs = name.split(".")[1]
        if theirs not in ALLOWED[mine]:
            bad.append(f"{module} ({mine}) -> {name} ({theirs})")
    return bad


def test_every_module_imports_only_its_own_layer_and_the_layers_below():
    """Catches, e.g., a method importing the other method, the report importing a training loop,
    or a core module reaching into utils/data/."""
    bad = [line for module, path in modules() for line in violations(module, open(path, encoding="utf-8").read())]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module, source", [
    ("utils.mah.engine", "from utils.mmhh import losses"),  # one method importing the other
    ("utils.mmhh.train", "def f():\n    from utils.mah.adsh import similarity\n"),  # hidden in a function
    ("utils.report.tables", "from utils.mah import engine"),  # the report reaching a training loop
    ("utils.metrics", "import utils.data.labels"),  # a core module reaching up
    ("utils.data.loader", "from utils import mmhh"),  # data importing a method package
    ("utils.data.loader", "from ..mah import adsh"),  # a relative import counts the same
])
def test_the_rule_catches_each_kind_of_violation(module, source):
    """The checker itself: each of these imports is against the rule and must be reported.
    Catches a checker that misses imports inside functions, relative imports or package names."""
    assert violations(module, source)


def test_the_rule_allows_imports_from_below():
    assert not violations("utils.index", "from utils import mah, mmhh\nfrom utils.report.figures import draw")
    assert not violations("utils.mah.engine", "from utils.data.feeder import Feeder\nfrom utils import metrics")


def test_no_module_is_longer_than_a_reader_can_hold():
    """Catches a module growing back into several jobs (metrics.py is the one exception)."""
    long = [f"{module}: {n} lines" for module, path in modules() if module != "utils.metrics"
            for n in [sum(1 for _ in open(path, encoding="utf-8"))] if n > LONGEST]
    assert not long, "\n".join(long)
