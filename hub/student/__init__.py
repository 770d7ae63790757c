"""What every account's Jupyter server imports on the hub.

``python -m hub`` copies this package to ``<state>/lib/unet_hub/`` (readable
by all accounts), and the grading engine's Validate modules to
``<state>/lib/validate/``.  Nothing there may reveal a solution or a hidden
test: students can read it.
"""
