"""Grading on submit: every new submission of an assignment that asks for it is graded and its feedback
returned within seconds, with no instructor action.

- ``queue``: the durable queue (SQLite on one machine, PostgreSQL for several), exactly once;
- ``inbox``: finds new submissions in the exchange and queues them;
- ``pipeline``: collect, autograde (the grading engine in ``grader/``), feedback, for one submission;
- ``worker``: claims and grades, under a lease;
- ``service``, ``web``, ``views``: the hub service that runs it all and shows students and instructors where
  each submission is;
- ``policy``: what the instructor decides per assignment (``grade_on_submit.json``);
- ``regrade`` (the command), ``regrade_plan``, ``regrade_course``, ``regrade_store``, ``regrade_run``,
  ``regrade_apply``, ``regrade_report``, ``regrade_page``: a regrade after a change of the course, previewed in a
  private copy of the course on the same workers, applied student by student under a journal.
"""
