"""The modules of pipeline/ form a layered graph: stages above, shared helpers below, no cycle.

The graph is read from the import statements (late ones inside functions included), so a cycle
cannot hide behind an import that only runs when a function is called."""

import ast
from pathlib import Path

PIPELINE = Path(__file__).resolve().parent.parent / "pipeline"


def imported_modules(tree: ast.AST, modules: set[str]) -> set[str]:
    """The pipeline/ modules that the import statements anywhere in `tree` name."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("pipeline."):
                out.add(node.module.split(".")[1])
            elif node.module == "pipeline":
                out |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("pipeline.")}
    return out


def import_graph() -> dict[str, set[str]]:
    files = {p.stem: p for p in PIPELINE.glob("*.py")}
    return {m: imported_modules(ast.parse(p.read_text()), set(files)) for m, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` as the path that closes it (first node repeated last), or None."""
    state, path = {}, []

    def visit(u):
        state[u] = "open"
        path.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == "open":
                return path[path.index(v) :] + [v]
            if v not in state and (cycle := visit(v)):
                return cycle
        state[u] = "done"
        path.pop()
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_find_cycle_finds_a_loop_and_passes_a_layered_graph():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    tree = ast.parse("def f():\n    from pipeline.b import x\n")
    assert imported_modules(tree, {"b"}) == {"b"}  # a late import is an edge too


def test_the_pipeline_modules_import_one_another_without_a_cycle():
    graph = import_graph()
    assert {"preference", "reward_model", "score"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


# (module, the pipeline module it may import inside a function, why)
LAZY = {
    (
        "score",
        "classifiers",
        "the VADER default's score stage would load torch and transformers for nothing",
    )
}


def test_every_pipeline_import_is_at_the_top_of_its_file():
    """But the few in LAZY, each with its reason; those are edges of the cycle check too."""
    modules = set(import_graph())
    allowed = {(m, dep) for m, dep, _ in LAZY}
    late = []
    for path in sorted(PIPELINE.glob("*.py")):
        tree = ast.parse(path.read_text())
        top = set(map(id, tree.body))
        late += [
            f"{path.name}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            and id(node) not in top
            and {(path.stem, dep) for dep in imported_modules(node, modules)} - allowed
        ]
    assert not late, f"imports of pipeline modules inside functions or classes: {late}"


def test_the_shared_batching_imports_no_stage():
    """The pairwise trainers and the reward model share it: it sits below every stage (a module
    with a `main`)."""
    graph = import_graph()
    stages = {m for m in graph if "def main(" in (PIPELINE / f"{m}.py").read_text()}
    assert "batching" in graph and not graph["batching"] & stages
