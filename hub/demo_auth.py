"""A login for the try-out hub: each demo account has a random password kept by root.

For a try-out on one machine only.  A real course swaps in a real
authenticator (PAM, OAuthenticator, LTI 1.3); README.md, "Running the course
on JupyterHub", shows the lines.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path

from jupyterhub.auth import Authenticator
from traitlets import Unicode


class DemoAuthenticator(Authenticator):
    """Checks a name and password against the JSON file ``passwords_file`` (name -> password)."""

    passwords_file = Unicode(help="JSON file mapping each demo account to its password").tag(config=True)

    async def authenticate(self, handler, data: dict) -> str | None:
        name, password = data.get("username", ""), data.get("password", "")
        passwords = json.loads(Path(self.passwords_file).read_text())
        expected = passwords.get(name)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        return name
