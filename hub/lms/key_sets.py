"""The LMS platforms' signing keys (JWKS), fetched without holding up the hub, and at a bounded rate.

A launch names its key by ``kid``.  ``KeySets.signing_key`` answers from
the cache while the key set is fresh (``lifespan``); otherwise it fetches
the platform's key set with tornado's asynchronous HTTP client (its own
instance, so a slow platform never takes the slots JupyterHub's proxy calls
use), within ``timeout`` seconds for the whole answer.  Whatever any
visitor sends, a platform's key set is fetched at most once per
``refetch_interval``: launches arriving while a fetch runs wait for that
fetch, and an unknown ``kid`` soon after a fetch is refused at once instead
of fetching again.  A slow or dead platform thus delays only its own
launches, by at most ``timeout``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.simple_httpclient import HTTPTimeoutError

from hub.lms.registrations import Platform

MAX_BODY = 1 << 20  # a key set is a few kilobytes


class KeyUnavailable(Exception):
    """No key of that id can be had now; ``str()`` says why, for the person launching."""


@dataclass
class _KeySet:
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    fetched_at: float = 0.0  # when the keys were last fetched successfully
    tried_at: float = float("-inf")  # when a fetch last started, successful or not
    error: str = ""
    fetching: asyncio.Future | None = None


Fetch = Callable[[Platform, float], Awaitable[dict[str, Any]]]


async def fetch_jwks(platform: Platform, timeout: float) -> dict[str, Any]:
    """The platform's key set as JSON, over https, within ``timeout`` seconds in all."""
    context = ssl.create_default_context(cafile=platform.ca_bundle or None)
    client = AsyncHTTPClient(force_instance=True, max_clients=2, max_body_size=MAX_BODY)
    try:
        response = await client.fetch(platform.jwks_url, connect_timeout=min(timeout, 3.0),
                                      request_timeout=timeout, ssl_options=context, follow_redirects=False,
                                      headers={"Accept": "application/json"})
    finally:
        client.close()
    return json.loads(response.body)


class KeySets:
    """Every registered platform's signing keys, by JWKS URL (see the module's docstring)."""

    def __init__(self, lifespan: float = 300.0, refetch_interval: float = 30.0, timeout: float = 5.0,
                 fetch: Fetch = fetch_jwks, clock: Callable[[], float] = time.monotonic):
        self.lifespan, self.refetch_interval, self.timeout = lifespan, refetch_interval, timeout
        self.fetch, self.clock = fetch, clock
        self._sets: dict[str, _KeySet] = {}
        self.fetches = 0  # how many fetches were started (for tests and the log)

    async def signing_key(self, platform: Platform, kid: str | None) -> jwt.PyJWK:
        """The key ``kid`` of ``platform`` (its only key when ``kid`` is None), or ``KeyUnavailable``."""
        entry = self._sets.setdefault(platform.jwks_url, _KeySet())
        now = self.clock()
        fresh = now - entry.fetched_at < self.lifespan and entry.keys
        if not (fresh and self._pick(entry, kid) is not None):
            if entry.fetching is None and now - entry.tried_at >= self.refetch_interval:
                entry.tried_at = now
                self.fetches += 1
                entry.fetching = asyncio.ensure_future(self._refresh(platform, entry))
            if entry.fetching is not None:
                # shield: a launch that gives up (its browser left) must not cancel the fetch others wait for
                await asyncio.shield(entry.fetching)
        key = self._pick(entry, kid)
        if key is None:
            why = f" (the last fetch failed: {entry.error})" if entry.error else ""
            raise KeyUnavailable(f"the key {kid!r} is not in the key set of {platform.jwks_url}{why}; it is "
                                 f"fetched again at most every {self.refetch_interval:g} s")
        return key

    @staticmethod
    def _pick(entry: _KeySet, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(entry.keys.values())) if len(entry.keys) == 1 else None
        return entry.keys.get(kid)

    async def _refresh(self, platform: Platform, entry: _KeySet) -> None:
        try:
            data = await asyncio.wait_for(self.fetch(platform, self.timeout), self.timeout + 1)
            keys = {k.key_id or "": k for k in jwt.PyJWKSet.from_dict(data).keys if k.public_key_use in (None, "sig")}
            entry.keys, entry.fetched_at, entry.error = keys, self.clock(), ""
        except (TimeoutError, HTTPTimeoutError):
            entry.error = f"no answer within {self.timeout:g} s"
        except HTTPClientError as error:
            entry.error = f"HTTP {error.code} {error.message or ''}".strip()
        except (OSError, ValueError, jwt.PyJWTError) as error:
            entry.error = f"{type(error).__name__}: {error}"
        finally:
            entry.fetching = None
