"""sweeps' architecture, held by its own imports (every one, function-local ones included): floors
from the base up to the doors, no import from a floor to one above it, and no circle anywhere. And
gan_core's shared records below its judge (gan_core's own circles: tests/test_population.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import import_graph, source_nodes

SWEEPS = Path(__file__).resolve().parent.parent / "sweeps"
GAN_CORE = SWEEPS.parent / "gan_core"

FLOORS = (
    ("base", {"sweeps", "sweeps.errors", "sweeps.console", "sweeps.masked_io", "sweeps.signals", "sweeps.paths",
              "sweeps.urls"}),
    ("study", "sweeps.study"),
    ("stores", "sweeps.stores"),
    ("running", "sweeps.running"),
    ("report", "sweeps.report"),
    ("commands", "sweeps.commands"),
    ("doors", {"sweeps.cli", "sweeps.entry", "sweeps.__main__", "sweeps.gpu_check", "sweeps.panel_build"}),
)
"""Lowest first: a module may import its own floor and the floors below, never one above."""


def floor(module: str) -> int:
    for i, (_, members) in enumerate(FLOORS):
        if (module in members) if isinstance(members, set) else (module == members or module.startswith(members + ".")):
            return i
    raise AssertionError(f"{module} is on no floor: add it to FLOORS")


def test_every_module_is_on_a_floor_and_imports_nothing_above_it():
    graph = import_graph(SWEEPS, relative=False)
    up = [f"{m} ({FLOORS[floor(m)][0]}) imports {d} ({FLOORS[floor(d)][0]})"
          for m, deps in graph.items() for d in deps if floor(d) > floor(m)]
    assert not up, "\n".join(sorted(up))


def test_sweeps_has_no_import_circle_not_even_through_a_function_local_import():
    graph = import_graph(SWEEPS, relative=False)

    def visit(node, stack):
        assert node not in stack, " -> ".join(stack + [node])
        for dep in sorted(graph[node]):
            visit(dep, stack + [node])

    for module in graph:
        visit(module, [])


OPENERS = {"open_storage", "open_study_for", "load_study", "open_studies", "open_runs", "MlflowClient", "for_reading"}
"""What opens an Optuna or MLflow store: only commands (and the stores they call); the report and the
atlas are handed `StoredStudies` and `TrackedRuns`."""


@pytest.mark.parametrize("package", ["sweeps.report", "sweeps.running", "sweeps.study"])
def test_reports_the_atlas_and_the_plan_are_given_stores_and_never_open_one(package):
    bad = []
    for name, node in source_nodes(SWEEPS):
        if name.startswith(package):
            called = node.func.attr if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else \
                node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else None
            imported = {a.name for a in node.names} if isinstance(node, ast.ImportFrom) else set()
            bad += [f"{name}: {x}" for x in ({called} | imported) & OPENERS]
    assert not bad, bad


def test_the_shared_records_import_nothing_of_the_judge():
    """Everything imports gan_core.records, the judge (gan_core.judge) included: records never import it."""
    graph = import_graph(GAN_CORE, relative=True)
    assert "gan_core.judge.evaluator" in graph  # the walk reaches the judge's subpackage
    bad = sorted(d for d in graph["gan_core.records"] if d == "gan_core.judge" or d.startswith("gan_core.judge."))
    assert not bad, bad
