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
from grader.engine.diagrams import HTML_MIME, SVG_MIME, as_html
from grader.engine.intake import notes
from grader.engine.pictures import picture
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


# Keras calls where a None argument can only be a template's blank; `activation=None` is a real choice.
_LAYER_CALLS = {"Conv2D", "Conv2DTranspose", "MaxPooling2D", "MaxPool2D", "Dropout", "Input", "concatenate",
                "Concatenate"}


def _called_name(call: ast.Call) -> str:
    func = call.func.func if isinstance(call.func, ast.Call) else call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def placeholders(source: str) -> list[tuple[int, str]]:
    """Lines of ``source`` that still pass ``None`` where the template left a blank (``Conv2D(None, None)``)."""
    tree = _parse(source)
    if tree is None:
        return []
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or _called_name(node) not in _LAYER_CALLS:
            continue
        values = [*node.args, *(k.value for k in node.keywords if k.arg != "activation")]
        if any(isinstance(v, ast.Constant) and v.value is None for v in values):
            found.add(node.lineno)
    lines = source.splitlines()
    return [(n, lines[n - 1].strip()) for n in sorted(found)]


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

    def blanks(self, function: str) -> str:
        """A note pointing at the template's ``None`` placeholders left in the function's cell."""
        cell = self.solutions.get(function)
        lines = [] if cell is None else placeholders(cell[1].source)
        if not lines:
            return ""
        where = "; ".join(f"line {n}: `{text[:80]}`" for n, text in lines[:3])
        return (f" This exercise still has the template's None placeholders ({where}): replace each None with "
                "the value the exercise asks for.")

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
        return True, judge(grade_id, evidence, memo=True)
    except CheckFailed as err:
        blanks = code.blanks(function) if "your code raised" in str(err) else ""
        return False, f"{err}{blanks}{note}"


def _output(passed: bool, message: str) -> NotebookNode:
    if passed:
        return NotebookNode(output_type="stream", name="stdout", text=f"{PASSED}: {message}\n")
    return NotebookNode(output_type="error", ename="CheckFailed", evalue=message,
                        traceback=[f"Check failed: {message}"])


def _picture(function: str, record: RunRecord) -> NotebookNode | None:
    """The student's network beside the specification's, for the feedback of a failed exercise."""
    svg = picture(function, Evidence(record.evidence)) if record.evidence is not None else None
    if svg is None:
        return None
    title = f"Your {function} beside the specification's."
    return NotebookNode(output_type="display_data", metadata={}, data={
        HTML_MIME: as_html(svg, title), SVG_MIME: svg, "text/plain": f"[{title}]"})


class ApplyVerdicts(NbGraderPreprocessor):
    """Write each hidden test cell's verdict as its output, and a picture under an exercise's first failure."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        record = record_of(resources)
        with record.timing("checks"):
            results = verdicts(nb, record)
        pictured: set[str] = set()
        for cell in nb.cells:
            if cell.cell_type != "code" or not is_grade(cell):
                continue
            grade_id = cell.metadata.nbgrader["grade_id"]
            cell.outputs = [_output(*results[grade_id])]
            function = CHECKS[grade_id].function if grade_id in CHECKS else None
            if not results[grade_id][0] and function and function not in pictured:
                pictured.add(function)
                self._add_picture(cell, function, record)
        finished(resources, record, results)
        return nb, resources

    def _add_picture(self, cell: NotebookNode, function: str, record: RunRecord) -> None:
        try:
            with record.timing("pictures"):
                output = _picture(function, record)
        except Exception as err:  # noqa: BLE001 - a picture is a help, never a reason to lose a grade
            self.log.warning("No picture of %s: %s: %s", function, type(err).__name__, err)
            return
        if output is not None:
            cell.outputs.append(output)
