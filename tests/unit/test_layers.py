"""The folder tree is the architecture: imports only point down the flow.

Every import in src/glmkit, those inside functions too, is checked against a declared
layer order; a module may import its own layer or one below it. There are no cycles
between modules either."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "glmkit"
# The flow, bottom to top. Leaves at the root that many parts use come first.
LAYERS = ("", "knowledge", "host", "plan", "render", "run", "measure", "cli")


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    """The layer of a module; a package (`glmkit.measure`) is in its own layer."""
    parts = module.split(".")
    package = parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""
    return LAYERS.index(package)


def _imports() -> dict[str, set[str]]:
    """glmkit module → the glmkit modules it imports (anywhere in its body)."""
    modules = {_module(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith("glmkit"):
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    found.add(child if child in modules else node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("glmkit")}
        graph[name] = {m for m in found if m != name and m in modules}
    return graph


def test_every_module_belongs_to_a_layer() -> None:
    for module in _imports():
        if module != "glmkit":
            assert module.split(".")[1] in LAYERS or module.count(".") == 1, module


def test_imports_point_down_the_flow() -> None:
    upward = [f"{module} imports {target}" for module, targets in _imports().items()
              for target in targets
              if target != "glmkit" and _layer(target) > _layer(module)]
    assert upward == []


def test_the_check_sees_an_upward_package_import() -> None:
    assert _layer("glmkit.measure") > _layer("glmkit.policy")
    assert _layer("glmkit") == 0 and _layer("glmkit.run.engine") == LAYERS.index("run")


def test_the_library_never_imports_invoke() -> None:
    """tasks.py is the only place invoke is known (STYLE.md): the library is plain Python."""
    users = [str(path.relative_to(SRC)) for path in SRC.rglob("*.py")
             for node in ast.walk(ast.parse(path.read_text()))
             if (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0]
                 == "invoke") or (isinstance(node, ast.Import) and any(
                     a.name.split(".")[0] == "invoke" for a in node.names))]
    assert users == []


def test_no_import_cycles() -> None:
    graph = _imports()
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for child in sorted(graph.get(node, ())):
            if state.get(child) == 1:
                cycles.append(" → ".join([*trail[trail.index(child):], child]))
            elif child not in state:
                visit(child, [*trail, child])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


@pytest.mark.parametrize("task, module", [
    ("plan", "plan/advice.py"), ("bench", "measure/bench.py"), ("tune", "measure/tune.py"),
    ("check", "run/tool_check.py"), ("doctor", "run/doctor.py"),
    ("build", "run/image_build.py"), ("tiny_model", "run/tiny_model.py"),
    ("report", "measure/report.py"), ("recipes", "knowledge/recipes.py"),
    ("render", "run/deploy.py"), ("export", "run/deploy.py"), ("up", "run/deploy.py"),
    ("download", "host/hub.py"), ("login", "host/credentials.py"),
    ("models", "knowledge/catalog.py"),
])
def test_a_tasks_code_is_found_by_its_name(task: str, module: str) -> None:
    assert (SRC / module).is_file()
    tasks = (SRC.parents[1] / "tasks.py").read_text()
    dotted = "glmkit." + module.removesuffix(".py").replace("/", ".")
    body = tasks.split(f"def {task}(", 1)[1].split("\n@", 1)[0]
    assert dotted in body or dotted.rsplit(".", 1)[0] in body, (task, dotted)


def test_only_the_plan_asks_which_kind_a_deployment_is() -> None:
    # One server, a cluster and pd_cluster pools share one lifecycle (run.lifecycle): the
    # rest of the kit asks the Deployment protocol, never the plan's type.
    kinds = ("ServePlan", "ClusterPlan", "PdPlan", "GroupPlan")
    found = []
    for path in SRC.rglob("*.py"):
        if path.parent.name == "plan":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                found += [f"{path.relative_to(SRC)}:{node.lineno}" for _ in names & set(kinds)]
    assert found == []
    # One wait loop, called from the lifecycle only.
    callers = [p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")
               if "wait_until(" in p.read_text()]
    assert sorted(callers) == ["run/engine.py", "run/lifecycle.py"]
