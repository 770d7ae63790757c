"""The repository's plan holds: what students receive lives in their folders, one file each, and no import circles."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from grader import student_side

ROOT = student_side.REPOSITORY
# The rooms whose modules import each other by package name, and the student-side folders (plain names).
PACKAGES = ("grader", "hub", "bench")


def _module_name(path: Path) -> str:
    for folder in student_side.folders():
        if path.parent == folder:
            return path.stem
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    """Every in-project module by its import name (links left out: they are another name for a file here)."""
    paths = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    paths += [p for folder in student_side.folders() for p in folder.glob("*.py")]
    return {_module_name(p): p for p in paths if not p.is_symlink() and "node_modules" not in p.parts}


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The names an import statement can bind, most specific first (``from a import b`` may mean module a.b)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        prefix = ".".join([*base, node.module] if node.module else base)
    else:
        prefix = node.module or ""
    return [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Which in-project modules each module imports, anywhere in it (in functions, under TYPE_CHECKING too)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            candidates = _imported(node, name, path.name == "__init__.py")
            if isinstance(node, ast.Import):
                edges.update(c for c in candidates if c in modules)
            else:
                found = [c for c in candidates[:-1] if c in modules]
                edges.update(found or [c for c in candidates[-1:] if c in modules])
        graph[name] = edges - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_sees_a_circle_through_a_function_level_import(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "service.py").write_text("def main():\n    from pkg.web import serve\n")
    (tmp_path / "pkg" / "web.py").write_text("from typing import TYPE_CHECKING\n"
                                              "if TYPE_CHECKING:\n    from pkg import service\n")
    (tmp_path / "pkg" / "views.py").write_text("from . import web\n")
    modules = {"pkg": tmp_path / "pkg" / "__init__.py", "pkg.service": tmp_path / "pkg" / "service.py",
               "pkg.web": tmp_path / "pkg" / "web.py", "pkg.views": tmp_path / "pkg" / "views.py"}
    graph = import_graph(modules)
    assert graph["pkg.views"] == {"pkg.web"}
    assert cycles(graph) == [["pkg.service", "pkg.web"]]


def test_no_import_circles_in_the_project() -> None:
    graph = import_graph(project_modules())
    # The walk sees the services' composition: their entry points import their pages, and not the other way.
    assert "hub.grade_on_submit.web" in graph["hub.grade_on_submit.service"]
    assert "hub.lms.web" in graph["hub.lms.service"]
    assert cycles(graph) == []


def test_what_students_receive_lives_in_their_folders_as_real_files() -> None:
    for name in student_side.MODULES:
        assert (student_side.ASSIGNMENT_DIR / f"{name}.py").is_file()
        assert not (student_side.ASSIGNMENT_DIR / f"{name}.py").is_symlink(), name
    assert not (student_side.ASSIGNMENT_DIR / "specification.json").is_symlink()
    for name in student_side.LAB_MODULES:
        assert not (student_side.LAB_DIR / f"{name}.py").is_symlink(), name
    # A shared module is one file: the lab's name for it links to the assignment's.
    for name in student_side.LAB_LINKED:
        link = student_side.LAB_DIR / f"{name}.py"
        assert link.is_symlink() and link.resolve() == student_side.ASSIGNMENT_DIR / f"{name}.py", link
    # Nothing students receive is left at the root but the links the project's layout keeps there.
    at_root = {p.stem for p in ROOT.glob("*.py")} & {*student_side.MODULES, *student_side.LAB_MODULES}
    assert at_root == set(student_side.ROOT_LINKS)


@pytest.mark.parametrize("name", student_side.ROOT_LINKS)
def test_the_root_copy_cannot_drift_from_the_assignments(name: str) -> None:
    path = ROOT / f"{name}.py"
    assert path.is_symlink(), f"{path} must be a link to the assignment folder's file, not a copy"
    assert path.resolve() == student_side.ASSIGNMENT_DIR / f"{name}.py"
    assert path.read_bytes() == (student_side.ASSIGNMENT_DIR / f"{name}.py").read_bytes()


def test_the_tools_look_for_the_student_side_modules_where_the_grader_does() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = [f.relative_to(ROOT).as_posix() for f in student_side.folders()]
    assert config["tool"]["pytest"]["ini_options"]["pythonpath"][:2] == folders
    assert config["tool"]["ruff"]["src"][:2] == folders
    assert config["tool"]["mypy"]["mypy_path"].split(":") == folders


def test_the_grader_imports_the_modules_from_the_assignments_folder() -> None:
    import probe
    import skip_lab
    import spec_checks

    assert Path(probe.__file__).resolve() == student_side.ASSIGNMENT_DIR / "probe.py"
    assert Path(spec_checks.__file__).resolve() == student_side.ASSIGNMENT_DIR / "spec_checks.py"
    assert spec_checks.SPECIFICATION_FILE == student_side.ASSIGNMENT_DIR / "specification.json"
    assert Path(skip_lab.__file__).resolve() == student_side.LAB_DIR / "skip_lab.py"


# docs/architecture.md, "Who may call whom": rooms that must not import another room.
FORBIDDEN = [
    ("grader.engine", ("hub", "grader.tools", "grader.dev", "bench")),
    ("grader.course", ("hub", "grader.tools", "grader.dev", "bench")),
    ("hub.grade_on_submit", ("hub.lms",)),
    ("hub.student", ("grader", "hub")),
]


def _in(module: str, room: str) -> bool:
    return module == room or module.startswith(room + ".")


def test_imports_go_down_the_rooms_never_up() -> None:
    graph = import_graph(project_modules())
    wrong = [f"{a} imports {b}" for a, bs in graph.items() for b in bs
             for room, banned in FORBIDDEN if _in(a, room) and any(_in(b, r) for r in banned)
             and not _in(b, room)]
    # The student side ships alone: it imports nothing of the project but itself.
    student = set(student_side.MODULES) | set(student_side.LAB_MODULES)
    wrong += [f"{a} imports {b}" for a in student for b in graph.get(a, ()) if b not in student]
    assert wrong == []
