"""Turn the probe's evidence into the outputs of the hidden test cells.

This runs in nbgrader's process after ``SandboxedExecute``.  Each hidden test
cell gets exactly one output that nbgrader's ``SaveAutoGrades`` scores: a
line on stdout when the check passed (full points), an error naming the
problem when it failed (0 points).  Whatever the cell printed in the
student's kernel is never looked at: those cells do not run there.

Besides the checks themselves, two rules read the student's code as text:
a graded function may not use a global variable of the notebook, and a
renamed function is named in the message.
"""

from __future__ import annotations

import ast
import symtable

from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from nbgrader.utils import is_grade, is_solution

from grader.engine.checks import CHECKS, CheckFailed, Evidence, check_function, judge
from grader.engine.intake import notes

PASSED = "Passed"


def _parse(source: str) -> ast.Module | None:
    # Cells with IPython magics or syntax errors cannot be parsed; they define nothing we can read.
    try:
        tree = ast.parse(source)
        # Some errors (e.g. a module-level `nonlocal`) only show in the symbol table.
        symtable.symtable(source, "<cell>", "exec")
        return tree
    except (SyntaxError, ValueError):
        return None


def module_variables(sources: list[str]) -> set[str]:
    """Names that the notebook's cells bind at top level to data (not imports, functions or classes)."""
    names: set[str] = set()
    for source in sources:
        if _parse(source) is None:
            continue
        for symbol in symtable.symtable(source, "<cell>", "exec").get_symbols():
            if symbol.is_assigned() and not symbol.is_imported() and not symbol.is_namespace():
                names.add(symbol.get_name())
    return names


def _function_table(source: str, name: str) -> symtable.SymbolTable | None:
    tables = [t for t in symtable.symtable(source, "<cell>", "exec").get_children()
              if t.get_type() == "function" and t.get_name() == name]
    return tables[-1] if tables else None


def globals_used(name: str, sources: list[str]) -> list[str]:
    """Global variables of the notebook that the last definition of function ``name`` reads."""
    defining = [s for s in sources if (tree := _parse(s)) is not None
                and any(isinstance(n, ast.FunctionDef) and n.name == name for n in tree.body)]
    if not defining:
        return []
    variables = module_variables(sources)
    found: set[str] = set()
    pending = [_function_table(defining[-1], name)]
    while pending:
        table = pending.pop()
        if table is None:
            continue
        found.update(s.get_name() for s in table.get_symbols() if s.is_global() and s.get_name() in variables)
        pending.extend(table.get_children())
    return sorted(found)


def defined_functions(source: str) -> list[str]:
    """Names of the functions that ``source`` defines at top level."""
    tree = _parse(source)
    return [] if tree is None else [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]


def verdicts(nb: NotebookNode, record: dict) -> dict[str, tuple[bool, str]]:
    """``grade_id -> (passed, message)`` for every hidden test cell of ``nb``."""
    student_sources = [c.source for c in nb.cells if c.cell_type == "code" and not is_grade(c)]
    # Each function is read once, though two hidden cells test it.
    reads = {check.function: globals_used(check.function, student_sources) for check in CHECKS.values()}
    solution_cell = {c.metadata.nbgrader["grade_id"]: (i, c) for i, c in enumerate(nb.cells)
                     if c.cell_type == "code" and is_solution(c)}
    problems = {int(k): v for k, v in record.get("problems", {}).items()}
    evidence = Evidence(record["evidence"]) if record.get("evidence") is not None else None
    results: dict[str, tuple[bool, str]] = {}
    for cell in nb.cells:
        if cell.cell_type != "code" or not is_grade(cell):
            continue
        grade_id = cell.metadata.nbgrader["grade_id"]
        check = CHECKS.get(grade_id)
        if check is None:
            results[grade_id] = (False, f"The grader has no check for the cell '{grade_id}'; ask your instructor.")
            continue
        passed, message = _one(check.function, grade_id, evidence, record, reads[check.function],
                               solution_cell.get(check.function), problems)
        if not passed and notes(nb):
            message += " Note: " + " ".join(notes(nb))
        results[grade_id] = (passed, message)
    return results


def _one(function: str, grade_id: str, evidence: Evidence | None, record: dict, used: list[str],
         solution: tuple[int, NotebookNode] | None, problems: dict[int, str]) -> tuple[bool, str]:
    note = ""
    if solution is not None and solution[0] in problems:
        note = f" (When your {function} cell ran: {problems[solution[0]]})"
    if evidence is None:
        return False, f"{function} could not be graded: {record.get('reason') or 'no result'}.{note}"
    if not evidence.function(function).get("defined") and solution is not None:
        others = [n for n in defined_functions(solution[1].source) if n != function]
        if others:
            note += f" Your {function} cell defines {', '.join(others)} instead: the name must stay {function}."
    try:
        # Name and signature first: a renamed parameter also shows up as a global below.
        check_function(function, evidence.function(function))
    except CheckFailed as err:
        return False, f"{err}{note}"
    if used:
        names = ", ".join(f"'{n}'" for n in used)
        return False, (f"{function} uses the global variable{'s' if len(used) > 1 else ''} {names}, defined "
                       "outside the function. A graded function may only use its arguments (and imported "
                       "names): the grader calls it with other arguments.")
    try:
        return True, judge(grade_id, evidence)
    except CheckFailed as err:
        return False, f"{err}{note}"


class ApplyVerdicts(NbGraderPreprocessor):
    """Write each hidden test cell's verdict as its only output."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        record = resources.get("unet_grading") or {"reason": "the notebook was not executed"}
        results = verdicts(nb, record)
        for cell in nb.cells:
            if cell.cell_type != "code" or not is_grade(cell):
                continue
            passed, message = results[cell.metadata.nbgrader["grade_id"]]
            cell.outputs = [
                NotebookNode(output_type="stream", name="stdout", text=f"{PASSED}: {message}\n") if passed
                else NotebookNode(output_type="error", ename="CheckFailed", evalue=message,
                                  traceback=[f"Check failed: {message}"])
            ]
        return nb, resources
