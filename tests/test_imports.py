"""The modules of pipeline/ form a layered graph: stages above, shared helpers below, no cycle.

The graph is read from the import statements (late ones inside functions included), so a cycle
cannot hide behind an import that only runs when a function is called."""

import ast
import re
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
        "rewards",
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


def stage_modules() -> set[str]:
    """The modules the rules run (`python -m pipeline.<stage>`, or through `{params.launch}`)."""
    rules = PIPELINE.parent / "workflow" / "rules"
    text = "".join(f.read_text() for f in rules.glob("*.smk"))
    return set(re.findall(r"(?:python -m|\{params\.launch\}) pipeline\.(\w+) ", text))


def test_stages_import_helpers_and_no_module_imports_a_stage():
    """What two stages share lies below both, in a helper; only the preflight, which times the
    stages' own jobs, imports them."""
    graph = import_graph()
    stages = stage_modules()
    assert {"preference", "ppo", "online", "sample", "score", "evaluate", "table"} <= stages
    found = {m: sorted(graph[m] & stages) for m in graph if m != "preflight" and graph[m] & stages}
    assert found == {}
