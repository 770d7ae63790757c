"""Speed and quality figures (``python -m bench``); they import the student-side modules as the grader does."""

from grader import student_side

student_side.put_on_path()
