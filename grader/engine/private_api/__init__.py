"""Every use of another package's private API, one module per package.

The engine overrides or reads a few things that the packages do not promise
to keep (method names starting with an underscore, attributes of their
objects).  Each module here names the package versions its code was checked
against (``CHECKED_WITH``), requirements.txt pins exactly those versions, and
``tests/test_private_api.py`` fails, naming the module, when an installed
version differs: upgrading one of them means reading that module's uses
against the new version first.
"""
