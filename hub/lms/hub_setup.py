"""Set-up of the LMS part of a hub (``python -m hub`` with ``lms`` on), as root; every step can run again.

Makes ``<state>/lms`` (root only) with the tool's key, and an empty list of
registrations if there is none yet, and prints what to enter in the LMS.
"""

from __future__ import annotations

import json
import os

from hub.layout import HubLayout
from hub.lms.keys import ensure_tool_key, write_private
from hub.lms.registrations import RegistrationError, load_platforms
from hub.lms.scopes import TOOL_SCOPES


def tool_urls(layout: HubLayout) -> dict[str, str]:
    """What an instructor enters in the LMS (docs/lms.md)."""
    base = f"{layout.url}/hub"
    return {"login initiation URL (OpenID Connect)": f"{base}/lti13/oauth_login",
            "redirect URI": f"{base}/lti13/oauth_callback", "target link URI": base,
            "public keyset (JWKS) URL": f"{base}/lti13/jwks", "Canvas JSON configuration": f"{base}/lti13/config"}


def set_up_lms(layout: HubLayout) -> None:
    layout.lms_dir.mkdir(mode=0o700, exist_ok=True)
    os.chmod(layout.lms_dir, 0o700)
    key = ensure_tool_key(layout.lms_dir / "tool-key.pem")
    platforms = layout.lms_dir / "platforms.json"
    if not platforms.exists():
        write_private(platforms, "[]\n")
    try:
        registered = load_platforms(platforms)
    except RegistrationError as error:
        registered = []
        print(f"  warning: {error}")
    print(f"  LMS (LTI 1.3): tool key {key.kid[:12]}..., {len(registered)} platform(s) in {platforms}")
    if not layout.tls_cert:
        print("  warning: the hub serves http; an LMS launches only to https (docs/lms.md, 'HTTPS')")
    for what, url in tool_urls(layout).items():
        print(f"    {what:40} {url}")
    print(f"    {'scopes':40} {json.dumps(TOOL_SCOPES)}")
