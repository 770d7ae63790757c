"""Students' and instructors' own Jupyter servers on the hub: each in limits of its own.

``homes``: each account's home is a file system of its own, of a fixed size;
``spawner``: each server and everything it starts runs in a control group
with memory, process and CPU limits, with a private in-memory /tmp.
"""


def group_name(account: str) -> str:
    """The control group of ``account``'s server (``spawner``), which removing the account also removes."""
    return f"unet-hub-server-{account}"
