"""Hand the tool's key and the registrations to a program through a pipe, not a file it could read again.

    python -I secrets_pipe.py KEY_FILE PLATFORMS_FILE -- COMMAND ...

Run by root (the hub starts the LMS service with it): reads the two
root-only files, writes them as JSON into a pipe, and executes COMMAND (which
becomes the grader account, ``hub/as_account.py``) with the pipe's reading
end open and its number in ``UNET_LMS_SECRETS_FD``.  The service reads it
once at start; nothing of it is in its environment, its arguments or a file
that account can open.  It imports nothing from this project, since the hub
runs it by path.
"""

from __future__ import annotations

import json
import os
import sys

LIMIT = 60_000  # a pipe holds 64 KiB before a writer blocks: the key and a few registrations fit easily


def main(argv: list[str]) -> None:
    if "--" not in argv or argv.index("--") != 2 or len(argv) < 4:
        raise SystemExit("usage: secrets_pipe.py KEY_FILE PLATFORMS_FILE -- COMMAND ...")
    with open(argv[0]) as key, open(argv[1]) as platforms:
        payload = json.dumps({"key": key.read(), "platforms": json.load(platforms)}).encode()
    if len(payload) > LIMIT:
        raise SystemExit(f"{argv[1]} is too large to hand over ({len(payload)} bytes)")
    read, write = os.pipe()
    os.write(write, payload)
    os.close(write)
    os.set_inheritable(read, True)
    os.environ["UNET_LMS_SECRETS_FD"] = str(read)
    os.execvp(argv[3], argv[3:])


if __name__ == "__main__":
    main(sys.argv[1:])
