"""The layer rule of docs/architecture.md, read off the source: imports only go down.

Layers, bottom to top: the core (types, keys, schedules, references, objectives, checks,
files, naming, datasets); certificates and diagnostics; kernels and solvers; models;
integrations; the package's public face (``mflangevin/__init__.py``, the public aliases, the
command line). A module imports only from its own layer or below, never a private name of
another module, and no kernel algorithm imports another.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "mflangevin"

LAYERS = {
    "mflangevin.types": 0,
    "mflangevin.keys": 0,
    "mflangevin.schedules": 0,
    "mflangevin.references": 0,
    "mflangevin.objectives": 0,
    "mflangevin.proximal": 0,
    "mflangevin._checks": 0,
    "mflangevin._files": 0,
    "mflangevin._naming": 0,
    "mflangevin._sparse": 0,
    "mflangevin.datasets": 0,
    "mflangevin.sharding": 0,
    "mflangevin.certificates": 1,
    "mflangevin.diagnostics": 1,
    "mflangevin.kernels": 2,
    "mflangevin.solvers": 2,
    "mflangevin.models": 3,
    "mflangevin.models.losses": 0,  # the loss functions (types only), which the solvers share
    "mflangevin.integrations": 4,
    "mflangevin.arviz": 5,
    "mflangevin.numpyro": 5,
    "mflangevin.cli": 5,
    "mflangevin.__main__": 5,
    "mflangevin": 5,
}

# The kernels' shared machinery; every other kernel module is one algorithm.
KERNEL_INFRASTRUCTURE = {"data", "diffusions", "gradients", "_permutation", "__init__"}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(name: str) -> int:
    """The layer of a module: that of its longest listed prefix."""
    while name not in LAYERS:
        name = name.rsplit(".", 1)[0]
    return LAYERS[name]


def imports(path: pathlib.Path):
    """(imported module, imported names) of every ``mflangevin`` import in a file."""
    tree = ast.parse(path.read_text())
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    )
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mflangevin"):
                    yield alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = node.module if node.level == 0 else f"{package}.{node.module}"
            if module.startswith("mflangevin"):
                yield module, [alias.name for alias in node.names]


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_go_down(path):
    source = module_name(path)
    for target, names in imports(path):
        # ``from mflangevin.certificates import duality`` names a submodule, not a package's name.
        for name in names or [""]:
            full = (
                f"{target}.{name}"
                if (PACKAGE.parent / f"{target}.{name}".replace(".", "/")).is_dir()
                or (PACKAGE.parent / (f"{target}.{name}".replace(".", "/") + ".py")).exists()
                else target
            )
            assert layer(full) <= layer(source), (
                f"{source} (layer {layer(source)}) imports {full} (layer {layer(full)})"
            )


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_private_name_crosses_packages(path):
    source_package = (
        module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    )
    for target, names in imports(path):
        for name in names:
            if name.startswith("_") and not name.startswith("__"):
                assert target == source_package, (
                    f"{module_name(path)} imports private {target}.{name}"
                )


def test_kernel_algorithms_do_not_import_each_other():
    kernels = PACKAGE / "kernels"
    algorithms = {p.stem for p in kernels.glob("*.py")} - KERNEL_INFRASTRUCTURE
    assert {"mfld", "pda", "asgd", "streaming"} <= algorithms
    for name in algorithms:
        for target, names in imports(kernels / f"{name}.py"):
            imported = (
                {target.rsplit(".", 1)[-1], *names}
                if target.startswith("mflangevin.kernels")
                else set()
            )
            assert not (imported & (algorithms - {name})), (
                f"kernels.{name} imports {imported & algorithms}"
            )


def test_importing_the_package_loads_no_model_or_integration():
    code = (
        "import sys, mflangevin; "
        "bad = [m for m in sys.modules if m.startswith(('mflangevin.models', "
        "'mflangevin.integrations', 'numpyro', 'arviz'))]; print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_public_submodules_import_as_modules():
    code = (
        "import mflangevin.gradients, mflangevin.data; from mflangevin.gradients import sgd; "
        "import mflangevin; assert mflangevin.gradients.sgd is sgd"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", sorted((PACKAGE / "kernels").glob("*.py")), ids=lambda p: p.name)
def test_kernels_use_the_core_only(path):
    """Kernels and certificates sit side by side: a kernel never imports a certificate (PDA's
    dual bound is a hook the caller hands in) nor a diagnostic."""
    for module, _ in imports(path):
        assert not module.startswith(("mflangevin.certificates", "mflangevin.diagnostics")), (
            f"{path.name} imports {module}"
        )
