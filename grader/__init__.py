"""The grading engine and its tools; importing the package makes the student-side modules importable.

The modules students receive live in the assignment's folder, not here
(``grader/student_side.py`` says where and why).
"""

from grader import student_side

student_side.put_on_path()
