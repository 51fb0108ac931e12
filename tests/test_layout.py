"""The codebase's shape: no import cycle among the project's modules (counting imports inside
functions too: a lazy import is a cycle all the same), and no module citing a document the
repository lacks."""

import ast
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = (
    "adapters",
    "api",
    "bench",
    "bridge",
    "device",
    "faults",
    "local",
    "occupancy",
    "pipeline",
    "registry",
    "sim",
    "transforms",
)


def _modules():
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _imports(name: str, path: pathlib.Path, known: set):
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parents + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def test_the_import_graph_has_no_cycle():
    modules = dict(_modules())
    known = set(modules)
    graph = {name: set(_imports(name, path, known)) for name, path in modules.items()}
    # A package's __init__ importing its own submodules is not a cycle worth the name.
    graph = {n: {t for t in ts if not t.startswith(n + ".") and not n.startswith(t + ".")} for n, ts in graph.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == [], cycles


def test_no_file_cites_a_document_the_repository_lacks():
    cited = re.compile(r"\b((?:[A-Za-z_]+/)*[A-Za-z_]+\.md)\b")
    missing = []
    for path in [
        *REPO.glob("*.md"),
        *REPO.glob("docs/*.md"),
        *REPO.glob("*/README.md"),
        *(p for _, p in _modules()),
        REPO / "Makefile",
    ]:
        for doc in set(cited.findall(path.read_text(errors="replace"))):
            if not any((base / doc).exists() for base in (REPO, path.parent, REPO / "docs", REPO / "bench")):
                missing.append(f"{path.relative_to(REPO)} cites {doc}")
    assert missing == []


def test_the_worker_image_carries_what_the_job_imports_and_no_more():
    """templates/Dockerfile copies exactly the packages pipeline.main needs (its imports, lazy ones
    too), and the `[pipeline]` extra none of the launcher's libraries."""
    modules = dict(_modules())
    known = set(modules)
    needed, todo = set(), ["pipeline.main"]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo += [t for t in _imports(name, modules[name], known)]
    packages = {name.split(".")[0] for name in needed}
    dockerfile = (REPO / "templates" / "Dockerfile").read_text().splitlines()
    copied = {
        line.split()[1]
        for line in dockerfile
        if line.startswith("COPY ")
        and "--from" not in line
        and line.split()[1] != "setup.py"
        and not line.split()[1].startswith("requirements/")
    }
    assert copied == packages == {"adapters", "occupancy", "pipeline", "transforms"}
    setup = (REPO / "setup.py").read_text()
    pipeline_extra = setup[setup.index("PIPELINE = [") :]
    pipeline_extra = pipeline_extra[: pipeline_extra.index("]\n")]
    assert "google-api-python-client" not in pipeline_extra and "fastapi" not in pipeline_extra


def test_every_package_setup_py_installs_carries_what_its_modules_import():
    """`pip install .` installs the packages setup.py names; a module among them importing a
    package it leaves out (local/, `make run`, importing sim/) breaks the installed copy."""
    setup = (REPO / "setup.py").read_text()
    include = setup[setup.index("include=[") : setup.index("]", setup.index("include=["))]
    packaged = {name for name in re.findall(r'"([a-z_]+)"', include)}
    modules = dict(_modules())
    known = set(modules)
    needed = {
        target.split(".")[0]
        for name, path in modules.items()
        if name.split(".")[0] in packaged
        for target in _imports(name, path, known)
    }
    assert needed - packaged == set()


def test_no_test_module_imports_another():
    """Shared helpers live in conftest.py and the tests' support modules, never in a test_ module:
    importing one runs its module-level setup and couples two files' fixtures."""
    found = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            found += [f"{path.name} imports {n}" for n in names if re.match(r"tests\.test_\w+$", n)]
    assert found == []


# What the domain may import besides the standard library and itself: signature checks (PyJWT on
# cryptography) and the forecast's model (numpy, scikit-learn). No client of a service, no Beam,
# no web framework, no file format library: those are adapters'.
DOMAIN_LIBRARIES = {"cryptography", "jwt", "numpy", "sklearn"}


def _top_level_imports(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module.split(".")[0]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            # importlib.import_module("google.cloud.firestore"), __import__("..."): imports all the same.
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node.args[0].value.split(".")[0]


def test_the_domain_imports_no_client_library_and_no_other_package_of_the_project():
    """occupancy/ (message format, fold, schedule, TIDES rows, forecasts) imports the standard
    library, itself and DOMAIN_LIBRARIES only, lazy imports included; Firestore, BigQuery, Parquet,
    Beam and FastAPI are reached through adapters/, transforms/ and api/, which import it."""
    found = sorted(
        f"{path.relative_to(REPO)} imports {name}"
        for path in (REPO / "occupancy").rglob("*.py")
        for name in set(_top_level_imports(path))
        if name not in sys.stdlib_module_names and name != "occupancy" and name not in DOMAIN_LIBRARIES
    )
    assert found == []


def test_adapters_import_the_domain_and_their_clients_never_the_layers_above_them():
    """adapters/ is imported by the pipeline's transforms, the API, the registry CLI and the tools;
    importing any of them back would tie the Firestore code to Beam or FastAPI."""
    above = set(PACKAGES) - {"adapters", "occupancy"}
    found = sorted(
        f"{path.relative_to(REPO)} imports {name}"
        for path in (REPO / "adapters").rglob("*.py")
        for name in set(_top_level_imports(path))
        if name in above or name in {"apache_beam", "fastapi", "starlette"}
    )
    assert found == []
