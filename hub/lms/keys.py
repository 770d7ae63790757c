"""The tool's signing key: made once, kept root-only in the state folder, published as a JWKS.

The LMS checks every client assertion (the tool asking for an AGS or NRPS
token) against the public half, which it reads from the hub's
``/hub/lti13/jwks`` (the URL the instructor enters as the tool's "Public
JWK URL" / "Public keyset URL").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jwcrypto import jwk


@dataclass(frozen=True)
class ToolKey:
    """The private key in PEM and its key id (the JWK thumbprint, so it never changes for one key)."""

    pem: str
    kid: str

    def public_jwks(self) -> dict[str, Any]:
        key = jwk.JWK.from_pem(self.pem.encode())
        public = json.loads(key.export_public())
        public.update(kid=self.kid, alg="RS256", use="sig")
        return {"keys": [public]}

    @classmethod
    def from_pem(cls, pem: str) -> ToolKey:
        return cls(pem=pem, kid=jwk.JWK.from_pem(pem.encode()).thumbprint())


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, never open to others even for a moment."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def ensure_tool_key(path: Path) -> ToolKey:
    """The key at ``path``, made (RSA 2048) if there is none."""
    if not path.exists():
        key = jwk.JWK.generate(kty="RSA", size=2048)
        write_private(path, key.export_to_pem(private_key=True, password=None).decode())
    return ToolKey.from_pem(path.read_text())
