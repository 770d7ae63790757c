"""The course on a JupyterHub: set-up (``python -m hub``), the hub's configuration and its services.

Deployment, not grading: the grading engine stays in ``grader/``.
"""
