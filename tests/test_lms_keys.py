"""The platforms' key sets: fetched without holding up anything else, at most once per interval per platform.

A launch signed with an unknown key id makes the hub fetch the platform's
key set (``hub.lms.key_sets``).  These tests run a platform key endpoint
that hangs, or answers, on https in the test's own event loop, beside a fast
endpoint that stands for the rest of the hub: while launches with made-up
key ids are hammered, exactly one fetch runs, every launch is refused when
it times out, and the fast endpoint keeps answering meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time

import jwt
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from jwcrypto import jwk
from tornado.httpclient import AsyncHTTPClient

from hub.lms.key_sets import KeySets, KeyUnavailable
from hub.lms.registrations import Platform
from hub.lms.testing.tls import make_localhost_certificate


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_localhost_certificate(tmp_path_factory.mktemp("tls"))


class KeyEndpoint(tornado.web.RequestHandler):
    """The platform's JWKS: hangs for ``hang`` seconds first; counts its requests."""

    async def get(self) -> None:
        state = self.settings["state"]
        state["requests"] += 1
        await asyncio.sleep(state["hang"])
        self.write(json.dumps({"keys": state["keys"]}))


class Ping(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("pong")


def public_jwk() -> tuple[dict, str]:
    key = jwk.JWK.generate(kty="RSA", size=2048)
    public = json.loads(key.export_public())
    public.update(kid=key.thumbprint(), use="sig", alg="RS256")
    return public, key.thumbprint()


async def serve(tls, state: dict) -> tuple[tornado.httpserver.HTTPServer, int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls.cert), str(tls.key))
    server = tornado.httpserver.HTTPServer(tornado.web.Application(
        [("/jwks", KeyEndpoint), ("/ping", Ping)], state=state), ssl_options=context)
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets([sock])
    return server, sock.getsockname()[1]


def platform_at(port: int, tls) -> Platform:
    base = f"https://127.0.0.1:{port}"
    return Platform(issuer=base, client_id="c", authorize_url=f"{base}/auth", token_url=f"{base}/token",
                    jwks_url=f"{base}/jwks", deployment_ids=("d",), ca_bundle=str(tls.ca))


def test_a_hanging_key_endpoint_is_fetched_once_and_holds_up_nothing_else(tls):
    async def scenario() -> dict:
        state = {"requests": 0, "hang": 20.0, "keys": []}
        server, port = await serve(tls, state)
        platform = platform_at(port, tls)
        keys = KeySets(timeout=1.5, refetch_interval=30)
        pings: list[float] = []
        context = ssl.create_default_context(cafile=str(tls.ca))

        async def other_requests() -> None:
            client = AsyncHTTPClient()
            while not launches.done():
                start = time.monotonic()
                await client.fetch(f"https://127.0.0.1:{port}/ping", ssl_options=context)
                pings.append(time.monotonic() - start)
                await asyncio.sleep(0.05)

        async def launch(n: int) -> str:
            try:
                await keys.signing_key(platform, f"made-up-{n}")
            except KeyUnavailable as error:
                return str(error)
            return "accepted"

        started = time.monotonic()
        launches = asyncio.ensure_future(asyncio.gather(*(launch(n) for n in range(200))))
        await asyncio.gather(launches, other_requests())
        first_wave = time.monotonic() - started
        started = time.monotonic()
        second = await asyncio.gather(*(launch(n) for n in range(200, 400)))
        second_wave = time.monotonic() - started
        server.stop()
        return {"first": launches.result(), "second": second, "requests": state["requests"],
                "fetches": keys.fetches, "pings": pings, "first_wave": first_wave, "second_wave": second_wave}

    result = asyncio.run(scenario())
    print(f"\n200 launches against a hanging key endpoint: refused after {result['first_wave']:.2f} s; "
          f"{len(result['pings'])} other requests meanwhile, slowest {max(result['pings']) * 1000:.0f} ms; "
          f"200 more refused in {result['second_wave'] * 1000:.0f} ms without a fetch")
    assert result["requests"] == result["fetches"] == 1  # one fetch for 400 launches
    assert all("no answer within 1.5 s" in r for r in result["first"])
    assert all("fetched again at most every 30 s" in r for r in result["second"])
    # The rest kept being served while the fetch hung (its endpoint answers only after 20 s).
    assert len(result["pings"]) >= 5 and result["first_wave"] < 20


def test_keys_are_cached_and_an_unknown_kid_refetches_at_most_once_per_interval(tls):
    now = [1000.0]

    async def scenario() -> None:
        public, kid = public_jwk()
        state = {"requests": 0, "hang": 0.0, "keys": [public]}
        server, port = await serve(tls, state)
        platform = platform_at(port, tls)
        keys = KeySets(timeout=5, refetch_interval=30, lifespan=300, clock=lambda: now[0])
        assert isinstance(await keys.signing_key(platform, kid), jwt.PyJWK)
        assert isinstance(await keys.signing_key(platform, None), jwt.PyJWK)  # the only key, no kid named
        for _ in range(50):
            with pytest.raises(KeyUnavailable, match="not in the key set"):
                await keys.signing_key(platform, "rotated-in")
        assert state["requests"] == 1
        # The platform rotates its key; after the interval one visitor's launch fetches again, and it is there.
        rotated, new_kid = public_jwk()
        state["keys"] = [public, rotated]
        now[0] += 31
        await asyncio.gather(*(keys.signing_key(platform, new_kid) for _ in range(20)))
        assert state["requests"] == 2
        await keys.signing_key(platform, kid)
        now[0] += 301  # stale: fetched again once, the old key still usable meanwhile if the platform is down
        state["hang"] = 10.0
        fast = KeySets(timeout=0.5, refetch_interval=30, lifespan=300, clock=lambda: now[0])
        fast._sets = keys._sets
        assert isinstance(await fast.signing_key(platform, kid), jwt.PyJWK)
        server.stop()

    asyncio.run(scenario())
