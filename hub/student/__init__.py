"""What every account's Jupyter server imports on the hub.

``python -m hub`` copies this package to ``<state>/lib/unet_hub/`` (readable
by all accounts), together with ``grader/validate.py`` as
``unet_hub/grader_validate.py``.  Nothing here may reveal a solution or a
hidden test: students can read it.
"""
