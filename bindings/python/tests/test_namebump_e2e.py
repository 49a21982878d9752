"""The wheel's namebump against a Keyway server and the reference server
(namebump 0.0.16 on MariaDB), over loopback."""

import asyncio
import secrets
import socket
import time
import warnings

import pytest

import namebump
from namebump import DO_BUMP, DONT_BUMP, THROW_BUMP, Client, Keypair, PutRejected
from namebump.client import RequestRefused
from namebump.defs import OP_DEL, OP_GET, OP_PUT
from namebump.packet import Packet

from conftest import start_keyway, start_reference


def run(coro):
    return asyncio.run(coro)


def fresh_name(prefix="t"):
    return "{0}_{1}".format(prefix, secrets.token_hex(8))


def test_put_get_update_delete_usage(server):
    async def main():
        kp = Keypair.generate()
        client = await Client(server.dest, server.pk)
        assert client.afs == [socket.AF_INET] and client.af == socket.AF_INET
        name = fresh_name()
        ret = await client.put(name, b"hello world", kp)
        assert isinstance(ret, Packet) and ret.op == OP_PUT
        got = await client.get(name)
        assert (got.op, got.value, got.vkc) == (OP_GET, b"hello world", kp.vkc)
        assert got.updated > 0
        usage = await client.usage(kp)
        assert usage["af"] == 2 and usage["name_limit"] == 20 and usage["names_used"] >= 1
        await client.put(name, b"new value", kp)
        assert (await client.get(name)).value == b"new value"
        deleted = await client.delete(name, kp)
        assert deleted.op == OP_DEL
        miss = await client.get(name)
        assert miss.value is None and miss.updated == 0.0

    run(main())


def test_error_replies_raise_a_put_rejected(server):
    async def main():
        owner, stranger = Keypair.generate(), Keypair.generate()
        client = await Client(server.dest, server.pk)
        name = fresh_name()
        await client.put(name, b"mine", owner)
        with pytest.raises(PutRejected) as refused:
            await client.put(name, b"theirs", stranger)
        assert isinstance(refused.value, RequestRefused)
        assert refused.value.reason == "not_owner"
        with pytest.raises(RequestRefused):
            await client.delete(name, stranger)
        assert (await client.get(name)).value == b"mine"

    run(main())


def test_over_long_input_is_a_value_error(keyway_server):
    async def main():
        kp = Keypair.generate()
        client = await Client(keyway_server.dest, keyway_server.pk)
        with pytest.raises(ValueError):
            await client.put("n" * 51, b"v", kp)
        with pytest.raises(ValueError):
            await client.put("n", b"v" * 1025, kp)
        with pytest.raises(ValueError):
            await client.get("n" * 51)
        with pytest.raises(ValueError):
            await client.delete("n" * 51, kp)
        # The limits themselves are fine.
        name = "n" * 50
        await client.put(name, b"v" * 1024, kp)
        assert (await client.get(name)).value == b"v" * 1024

    run(main())


def test_non_ascii_str_keeps_the_reference_mapping_and_warns(keyway_server):
    async def main():
        kp = Keypair.generate()
        client = await Client(keyway_server.dest, keyway_server.pk)
        name = fresh_name("caf")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await client.put(name + "é", "naïve", kp)
        assert any(issubclass(w.category, UnicodeWarning) for w in caught)
        # Stored as the reference would store it: non-ASCII dropped.
        assert (await client.get(name.encode())).value == b"nave"

    run(main())


def test_a_skewed_clock_is_refused_with_the_reason(keyway_server):
    class Behind:
        def time(self):
            return time.time() - 1000

    async def main():
        client = await Client(keyway_server.dest, keyway_server.pk, sys_clock=Behind())
        with pytest.raises(RequestRefused) as refused:
            await client.put(fresh_name(), b"v", Keypair.generate())
        assert refused.value.reason == "clock_skew"

    run(main())


def test_constructor_checks_like_the_reference():
    with pytest.raises(ValueError):
        Client(("127.0.0.1", 1), b"\x02" * 32)
    with pytest.raises(ValueError):
        Client(("127.0.0.1", 1), b"\x02" * 33, proto=99)
    with pytest.raises(ValueError):
        Keypair()
    assert namebump.__all__ == ["DO_BUMP", "DONT_BUMP", "THROW_BUMP", "Client", "Keypair", "PutRejected"]


@pytest.mark.parametrize("kind", ["keyway", "reference"])
def test_quota_rejections(kind, tmp_path):
    served = start_keyway(tmp_path) if kind == "keyway" else start_reference()
    try:
        async def main():
            kp = Keypair.generate()
            client = await Client(served.dest, served.pk)
            for i in range(20):
                await client.put("q{0}".format(i), b"v", kp, behavior=DONT_BUMP)
            assert (await client.usage(kp))["names_used"] == 20
            with pytest.raises(PutRejected) as rejected:
                await client.put("q20", b"v", kp, behavior=DONT_BUMP)
            assert not isinstance(rejected.value, RequestRefused)
            assert str(rejected.value).startswith("namebump put rejected by server")
            # Nothing is old enough to bump: DO_BUMP is rejected the same way.
            with pytest.raises(PutRejected):
                await client.put("q20", b"v", kp, behavior=DO_BUMP)
            with pytest.raises(KeyError, match="putting this will bump"):
                await client.put("q20", b"v", kp, behavior=THROW_BUMP)
            # Updating a held name is not a new one.
            await client.put("q0", b"again", kp, behavior=DONT_BUMP)

        run(main())
    finally:
        served.stop()


async def live_tasks_down_to_zero(deadline_s=30):
    """Whether the native module's count of running awaitable tasks falls
    to zero within the deadline."""
    from keyway import _native

    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while _native._live_tasks() > 0 and loop.time() < end:
        await asyncio.sleep(0.05)
    return _native._live_tasks() == 0


class _BlackHole:
    """A UDP socket and a TCP listener on one loopback port that never
    answer: requests to it wait for their reply timeout."""

    def __enter__(self):
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        return self

    def __exit__(self, *exc):
        self.tcp.close()
        self.udp.close()


BAD_SECONDS = [float("nan"), float("inf"), float("-inf"), -1.0]


@pytest.mark.parametrize("bad", BAD_SECONDS + [0.0, 61.0])
def test_a_ttl_the_servers_would_refuse_is_a_value_error(keyway_server, bad):
    """A NaN ttl passes the reference server's freshness checks (spec bug
    25: a request replayable for ever); none leaves the client."""
    kp = Keypair.generate()

    async def main():
        client = await Client(keyway_server.dest, keyway_server.pk)
        name = fresh_name()
        with pytest.raises(ValueError):
            await client.put(name, b"v", kp, ttl=bad)
        with pytest.raises(ValueError):
            await client.delete(name, kp, ttl=bad)
        with pytest.raises(ValueError):
            await client.usage(kp, ttl=bad)
        assert (await client.get(name)).value is None

    run(main())


@pytest.mark.parametrize("bad", BAD_SECONDS)
def test_nan_infinite_or_negative_client_seconds_are_a_value_error(bad):
    pk = Keypair.generate().vkc

    async def main():
        for option in ("timeout", "retry_pause"):
            with pytest.raises(ValueError):
                await Client(("127.0.0.1", 1), pk, **{option: bad})
        for attempts in (0, -1, 2**40):
            with pytest.raises(ValueError):
                await Client(("127.0.0.1", 1), pk, attempts=attempts)

    run(main())


@pytest.mark.parametrize("bad", BAD_SECONDS)
def test_a_clock_that_is_not_unix_seconds_is_a_value_error(keyway_server, bad):
    """Never a NaN (or infinite, or negative) time signed into a request:
    a clock returning one is refused when the client is made, and when it
    turns bad later, at the next call."""

    class Clock:
        reading = bad

        def time(self):
            return self.reading

    async def main():
        with pytest.raises(ValueError):
            await Client(keyway_server.dest, keyway_server.pk, sys_clock=Clock())
        clock = Clock()
        clock.reading = time.time()
        client = await Client(keyway_server.dest, keyway_server.pk, sys_clock=clock)
        clock.reading = bad
        with pytest.raises(ValueError):
            await client.put(fresh_name(), b"v", Keypair.generate())
        with pytest.raises(ValueError):
            await client.get(fresh_name())

    run(main())


def test_cancelling_a_request_stops_the_rust_task():
    """A GET to a server that never answers waits (here) an hour per
    attempt; cancelling the awaitable must abort the Rust task behind it."""
    from keyway import _native

    async def main():
        with _BlackHole() as hole:
            client = await Client(("127.0.0.1", hole.port), Keypair.generate().vkc, timeout=3600)
            assert await live_tasks_down_to_zero(), "a task of an earlier test still runs"
            get = asyncio.ensure_future(client.get("nobody"))
            await asyncio.sleep(0.5)
            assert not get.done()
            assert _native._live_tasks() == 1
            get.cancel()
            with pytest.raises(asyncio.CancelledError):
                await get
            assert await live_tasks_down_to_zero(), "the cancelled request's Rust task still runs"

    run(main())
