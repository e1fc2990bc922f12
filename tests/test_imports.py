"""The modules of pipeline/ form a layered graph: the stages (pipeline/stages/) above, the helpers
(pipeline/*.py) below, no cycle.

A module is named by its dotted path under pipeline (`losses`, `stages.evaluate`). The graph is
read from the import statements (late ones inside functions included) and from the strings that
name a module's object as "pipeline.<module>:<name>" (how the method catalogue names a loss or a
step, so that a stage without torch need not import them), so neither a call-time import nor a
name in a string hides an edge."""

import ast
import re
from pathlib import Path

PIPELINE = Path(__file__).resolve().parent.parent / "pipeline"
REFERENCE = re.compile(r"^pipeline\.([\w.]+):\w*$")


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PIPELINE).with_suffix("").parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PIPELINE.rglob("*.py") if p.stem != "__init__"}


def imported_modules(tree: ast.AST, known: set[str]) -> set[str]:
    """The pipeline modules that the import statements and "pipeline.<module>:<name>" strings
    anywhere in `tree` name."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
            package = node.module.removeprefix("pipeline").lstrip(".")
            for alias in node.names:  # `from pipeline.stages import sft` names a module
                inside = f"{package}.{alias.name}".lstrip(".")
                out.add(inside if inside in known else package)
        elif isinstance(node, ast.Import):
            out |= {a.name.removeprefix("pipeline.") for a in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if m := REFERENCE.match(node.value):
                out.add(m.group(1))
    return out & known


def import_graph() -> dict[str, set[str]]:
    files = modules()
    return {
        m: imported_modules(ast.parse(p.read_text()), set(files)) - {m} for m, p in files.items()
    }


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


def test_every_route_to_a_module_is_an_edge():
    """A late import, a `from pipeline.stages import`, a dotted import and a catalogue string."""
    known = {"b", "c", "stages.d", "stages.e"}
    tree = ast.parse(
        "import pipeline.stages.e\n"
        "def f():\n    from pipeline.b import x\n"
        "from pipeline.stages import d\n"
        "STEP = 'pipeline.c:step'\n"
        "NOT = 'pipeline.c is a module'\n"
    )
    assert imported_modules(tree, known) == known


def test_the_pipeline_modules_import_one_another_without_a_cycle():
    graph = import_graph()
    assert {"stages.preference", "stages.reward_model", "stages.score", "losses"} <= set(graph)
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
    files = modules()
    allowed = {(m, dep) for m, dep, _ in LAZY}
    late = []
    for name, path in sorted(files.items()):
        tree = ast.parse(path.read_text())
        top = set(map(id, tree.body))
        late += [
            f"{name}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            and id(node) not in top
            and {(name, dep) for dep in imported_modules(node, set(files))} - allowed
        ]
    assert not late, f"imports of pipeline modules inside functions or classes: {late}"


def rule_modules() -> set[str]:
    """The modules the rules run (`python -m pipeline.<module>`, or through `{params.launch}`)."""
    rules = PIPELINE.parent / "workflow" / "rules"
    text = "".join(f.read_text() for f in rules.glob("*.smk"))
    return set(re.findall(r"(?:python -m|\{params\.launch\}) pipeline\.([\w.]+) ", text))


def test_the_rules_run_exactly_the_stages():
    stages = {m for m in modules() if m.startswith("stages.")}
    assert {"stages.preference", "stages.evaluate", "stages.table"} <= stages
    assert rule_modules() == stages


def test_helpers_reach_no_stage_and_stages_no_other_stage():
    """What two stages share lies below both, in a helper; only the preflight, which times the
    stages' own jobs, imports them. A helper's string naming a stage's object is a route too."""
    graph = import_graph()
    stages = {m for m in graph if m.startswith("stages.")}
    found = {
        m: sorted(graph[m] & stages) for m in graph if m != "stages.preflight" and graph[m] & stages
    }
    assert found == {}
