"""The layering DESIGN.md promises, checked on the code rather than trusted: the library imports without
Lightning, Gradio or MLflow, and neither ``app`` nor ``pipelines`` needs the other at import time."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# a child interpreter in which these packages cannot be imported, as on a machine that has only the library's
# own dependencies; then every ssm_signal module is imported there
_BLOCKED_IMPORT = r"""
import importlib, importlib.abc, pkgutil, sys

BLOCKED = {blocked!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, Block())
for name in list(sys.modules):
    if name.split(".")[0] in BLOCKED:
        del sys.modules[name]

import ssm_signal
names = sorted(m.name for m in pkgutil.walk_packages(ssm_signal.__path__, "ssm_signal."))
for name in names:
    importlib.import_module(name)
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & BLOCKED)
assert not loaded, loaded
print(len(names))
"""

BLOCKED = ("lightning", "pytorch_lightning", "lightning_fabric", "torchmetrics", "gradio", "mlflow",
           "pipelines", "app")


def test_library_imports_without_lightning_gradio_or_mlflow():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    code = _BLOCKED_IMPORT.format(blocked=set(BLOCKED))
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    modules = sorted(p for p in (ROOT / "ssm_signal").rglob("*.py"))
    # every module file was reached (the walk misses none that a package __init__ hides)
    assert int(r.stdout.split()[-1]) >= len(modules) - sum(p.name == "__init__.py" for p in modules)


def _imported_packages(package: str) -> dict[str, set[str]]:
    """For each module of a top-level package, the top-level project packages it imports (anywhere in it)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        tops: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                tops |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = tops & {"ssm_signal", "pipelines", "app"}
    return found


def test_no_import_cycle_between_app_and_pipelines():
    # deferred imports count too: a cycle through a function-level import is still a cycle of the design
    app_uses = {m for m, tops in _imported_packages("app").items() if "pipelines" in tops}
    lib_uses = {m for m, tops in _imported_packages("ssm_signal").items() if tops & {"pipelines", "app"}}
    assert not app_uses, f"app imports pipelines in {sorted(app_uses)}; pipelines hands it what it needs"
    assert not lib_uses, f"the library imports the layers above it in {sorted(lib_uses)}"


# records the file of every caller that installs a warning filter while the project's modules are imported
_FILTERS_AT_IMPORT = r"""
import importlib, pkgutil, sys, warnings

callers = set()

def recording(original):
    def install(*args, **kwargs):
        callers.add(sys._getframe(1).f_code.co_filename)
        return original(*args, **kwargs)
    return install

warnings.filterwarnings = recording(warnings.filterwarnings)
warnings.simplefilter = recording(warnings.simplefilter)
for top in ("ssm_signal", "pipelines", "app"):
    package = importlib.import_module(top)
    for m in pkgutil.walk_packages(package.__path__, top + "."):
        importlib.import_module(m.name)
print("\n".join(sorted(callers)))
"""


def test_importing_the_project_installs_no_warning_filter():
    # a filter installed at import changes every program that imports the module, tests included;
    # third-party packages may install their own, the project's modules none
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", _FILTERS_AT_IMPORT], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    ours = [f for f in r.stdout.splitlines() if Path(f).resolve().parts[:len(ROOT.parts) + 1] in
            {(ROOT / top).parts for top in ("ssm_signal", "pipelines", "app")}]
    assert not ours, ours


# the commands' own modules, imported where onnxruntime cannot be: it is an optional extra ("runtime"), needed
# only by --runtime onnx and the export
_WITHOUT_ONNXRUNTIME = r"""
import importlib, importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "onnxruntime":
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, Block())
for name in ("pipelines.cli", "pipelines.score", "pipelines.score.job", "pipelines.evaluate", "pipelines.evaluate.job",
             "ssm_signal.runtime.sidecar", "ssm_signal.streaming"):
    importlib.import_module(name)
assert "onnxruntime" not in sys.modules
"""


def test_commands_import_without_onnxruntime():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", _WITHOUT_ONNXRUNTIME], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
