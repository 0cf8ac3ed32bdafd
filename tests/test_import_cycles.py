"""No import cycles in the project's packages, counting imports inside functions too.

import-linter's layers contract keeps imports going downward between the packages; this test
keeps modules inside a package from importing each other (a lazy import inside a function is
still a cycle: it only hides it from the interpreter until that function runs).
"""

from __future__ import annotations

import tomllib

import grimp

from tests.conftest import REPO_ROOT

# The packages import-linter checks (pyproject.toml), so a new layer is covered here too.
PACKAGES = tuple(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"])

# Cycles known and being removed elsewhere, each named by the set of its modules. An entry whose
# cycle is gone fails the test too, so that it is deleted here and the cycle cannot come back.
ALLOWED_CYCLES: dict[frozenset[str], str] = {}


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of the import graph with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = lowlink[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, imported = work[-1]
            for target in imported:
                if target not in index:
                    index[target] = lowlink[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.find_modules_directly_imported_by(target)))))
                    break
                if target in on_stack:
                    lowlink[module] = min(lowlink[module], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowlink[parent] = min(lowlink[parent], lowlink[module])
                if lowlink[module] == index[module]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == module:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return sorted(components)


def _example_chain(graph: grimp.ImportGraph, component: list[str]) -> str:
    """A shortest cycle through the component's first module, e.g. `a -> b -> a`."""
    start = component[0]
    chains = [graph.find_shortest_chain(importer=target, imported=start)
              for target in graph.find_modules_directly_imported_by(start) if target in component]
    shortest = min((chain for chain in chains if chain), key=len)
    return " -> ".join((start, *shortest))


def test_import_cycle_finder_finds_a_lazy_import_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.services", "pkg.tasks", "pkg.models"):
        graph.add_module(module)
    graph.add_import(importer="pkg.tasks", imported="pkg.services", line_number=1, line_contents="import")
    graph.add_import(importer="pkg.services", imported="pkg.tasks", line_number=9, line_contents="lazy import")
    graph.add_import(importer="pkg.services", imported="pkg.models", line_number=2, line_contents="import")
    assert import_cycles(graph) == [["pkg.services", "pkg.tasks"]]


def test_no_import_cycles_in_the_project() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    found = {frozenset(component): _example_chain(graph, component) for component in import_cycles(graph)}
    unexpected = sorted(chain for component, chain in found.items() if component not in ALLOWED_CYCLES)
    stale = sorted(name for component, name in ALLOWED_CYCLES.items() if component not in found)
    assert not unexpected, "import cycles:\n" + "\n".join(unexpected)
    assert not stale, "allowed cycles that are gone (delete them from ALLOWED_CYCLES):\n" + "\n".join(stale)
