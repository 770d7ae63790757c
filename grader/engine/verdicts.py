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
from dataclasses import dataclass

from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from nbgrader.utils import is_grade, is_solution

from grader.engine.checks import CHECKS, CheckFailed, Evidence, check_function, judge
from grader.engine.intake import notes
from grader.engine.record import RunRecord, finished, record_of

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


@dataclass(frozen=True)
class StudentCode:
    """What the student's own cells show about each graded function: the globals it reads, where it is written."""

    reads: dict[str, list[str]]
    solutions: dict[str, tuple[int, NotebookNode]]
    notes: tuple[str, ...]

    @classmethod
    def of(cls, nb: NotebookNode) -> StudentCode:
        sources = [c.source for c in nb.cells if c.cell_type == "code" and not is_grade(c)]
        # Each function is read once, though two hidden cells test it.
        functions = {check.function for check in CHECKS.values()}
        return cls(
            reads={function: globals_used(function, sources) for function in sorted(functions)},
            solutions={c.metadata.nbgrader["grade_id"]: (i, c) for i, c in enumerate(nb.cells)
                       if c.cell_type == "code" and is_solution(c)},
            notes=tuple(notes(nb)),
        )

    def when_it_ran(self, function: str, record: RunRecord) -> str:
        """What went wrong when the function's own cell ran, as a note for its messages."""
        cell = self.solutions.get(function)
        if cell is None or cell[0] not in record.problems:
            return ""
        return f" (When your {function} cell ran: {record.problems[cell[0]]})"

    def renamed(self, function: str) -> str:
        """A note naming the functions its cell defines instead, when the grader cannot find it."""
        cell = self.solutions.get(function)
        others = [] if cell is None else [n for n in defined_functions(cell[1].source) if n != function]
        return f" Your {function} cell defines {', '.join(others)} instead: the name must stay {function}." \
            if others else ""


def verdicts(nb: NotebookNode, record: RunRecord) -> dict[str, tuple[bool, str]]:
    """``grade_id -> (passed, message)`` for every hidden test cell of ``nb``."""
    code = StudentCode.of(nb)
    evidence = Evidence(record.evidence) if record.evidence is not None else None
    results: dict[str, tuple[bool, str]] = {}
    for cell in nb.cells:
        if cell.cell_type != "code" or not is_grade(cell):
            continue
        grade_id = cell.metadata.nbgrader["grade_id"]
        check = CHECKS.get(grade_id)
        if check is None:
            results[grade_id] = (False, f"The grader has no check for the cell '{grade_id}'; ask your instructor.")
            continue
        passed, message = _verdict(check.function, grade_id, evidence, record, code)
        if not passed and code.notes:
            message += " Note: " + " ".join(code.notes)
        results[grade_id] = (passed, message)
    return results


def _verdict(function: str, grade_id: str, evidence: Evidence | None, record: RunRecord,
             code: StudentCode) -> tuple[bool, str]:
    note = code.when_it_ran(function, record)
    if evidence is None:
        return False, f"{function} could not be graded: {record.reason or 'no result'}.{note}"
    if not evidence.function(function).get("defined"):
        note += code.renamed(function)
    try:
        # Name and signature first: a renamed parameter also shows up as a global below.
        check_function(function, evidence.function(function))
    except CheckFailed as err:
        return False, f"{err}{note}"
    used = code.reads[function]
    if used:
        names = ", ".join(f"'{n}'" for n in used)
        return False, (f"{function} uses the global variable{'s' if len(used) > 1 else ''} {names}, defined "
                       "outside the function. A graded function may only use its arguments (and imported "
                       "names): the grader calls it with other arguments.")
    try:
        return True, judge(grade_id, evidence)
    except CheckFailed as err:
        return False, f"{err}{note}"


def _output(passed: bool, message: str) -> NotebookNode:
    if passed:
        return NotebookNode(output_type="stream", name="stdout", text=f"{PASSED}: {message}\n")
    return NotebookNode(output_type="error", ename="CheckFailed", evalue=message,
                        traceback=[f"Check failed: {message}"])


class ApplyVerdicts(NbGraderPreprocessor):
    """Write each hidden test cell's verdict as its only output."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        record = record_of(resources)
        with record.timing("checks"):
            results = verdicts(nb, record)
        for cell in nb.cells:
            if cell.cell_type == "code" and is_grade(cell):
                cell.outputs = [_output(*results[cell.metadata.nbgrader["grade_id"]])]
        finished(resources, record, results)
        return nb, resources
