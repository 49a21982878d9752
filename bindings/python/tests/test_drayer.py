"""The wheel's drayer: the original's dict API on a stream file, served
with startServer() and mirrored over HTTP by a second stream."""

import base64
import os
import stat

import pytest

import drayer
from drayer import DrayerStream


def test_dict_api_server_and_mirror(tmp_path):
    owner = DrayerStream(str(tmp_path / "owner.drayer"))
    key_file = tmp_path / "owner.drayer.privatekey"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    public = owner.getAttr("PublicKey")
    assert len(base64.b64decode(public)) == 32 and owner.pubkey == base64.b64decode(public)

    owner["greeting"] = "hello"
    owner["config"] = {"n": 3, "tags": ["a", "b"], "raw": b"\x00\x01"}
    owner["count"] = 41
    owner["count"] = 42
    owner["gone"] = "soon"
    owner["last"] = "x"  # deleting works by rewriting the next record
    del owner["gone"]
    assert owner["greeting"] == "hello"
    assert owner["config"] == {"n": 3, "tags": ["a", "b"], "raw": b"\x00\x01"}
    assert owner["count"] == 42
    assert "gone" not in owner and "greeting" in owner
    with pytest.raises(KeyError):
        owner["gone"]
    with pytest.raises(KeyError):
        del owner["never"]
    assert owner.keys() == ["greeting", "config", "count", "last"]
    owner.rawSetItem("page.html", b"<p>hi</p>", "file")
    assert owner.rawGetItemByKey("page.html", "file") == b"<p>hi</p>"

    port = drayer.startServer(port=0, host="127.0.0.1")
    assert drayer.startServer() == port, "one server per process"

    mirror = DrayerStream(str(tmp_path / "mirror.drayer"), pubkey=public, noServe=True)
    assert mirror.privkey is None
    inserted = mirror.sync("http://127.0.0.1:{0}/".format(port))
    assert inserted == 5
    assert mirror["config"]["tags"] == ["a", "b"] and mirror["count"] == 42
    assert "gone" not in mirror
    assert mirror.rawGetItemByKey("page.html", "file") == b"<p>hi</p>"

    # Later changes follow on the next sync; a mirror cannot write.
    owner["count"] = 43
    del owner["greeting"]
    mirror.sync("http://127.0.0.1:{0}/".format(port))
    assert mirror["count"] == 43 and "greeting" not in mirror
    with pytest.raises(ValueError):
        mirror["count"] = 0

    # Reopening checks the key it was asked for.
    with pytest.raises(ValueError):
        DrayerStream(str(tmp_path / "mirror.drayer"), pubkey=base64.b64encode(b"\x07" * 32).decode(), noServe=True)


def test_cancelling_a_sync_stops_the_pull_and_frees_the_stream(tmp_path):
    """A sync from a server that answers a byte at a time, a byte a second
    (so no read timeout of the client ever ends it), is cancelled by
    asyncio.wait_for: the Rust pull is aborted and gives the stream back
    (a pull still holding it would block every later call)."""
    import asyncio
    import socket
    import threading

    from keyway import _native

    owner = DrayerStream(str(tmp_path / "owner.drayer"), noServe=True)
    mirror = DrayerStream(str(tmp_path / "mirror.drayer"), pubkey=owner.getAttr("PublicKey"), noServe=True)
    stop = threading.Event()

    def trickle(server):
        """Accepts, reads the request, then sends a response head and body
        a byte every half second."""
        server.settimeout(0.5)
        held = []  # [connection, bytes sent]
        response = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"\x90" * 1000
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                # The request first: a byte before it is an error to the client.
                conn.settimeout(10)
                request = b""
                while b"\r\n\r\n" not in request and len(request) < 65536:
                    got = conn.recv(4096)
                    if not got:
                        break
                    request += got
                held.append([conn, 0])
            except OSError:
                pass
            for entry in held:
                conn, sent = entry
                try:
                    conn.sendall(response[sent:sent + 1])
                except OSError:
                    pass
                entry[1] = min(sent + 1, len(response) - 1)
            stop.wait(0.5)
        for conn, _ in held:
            conn.close()

    async def main():
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(16)
            url = "http://127.0.0.1:{0}".format(server.getsockname()[1])
            thread = threading.Thread(target=trickle, args=(server,), daemon=True)
            thread.start()
            try:
                loop = asyncio.get_running_loop()
                end = loop.time() + 30
                while _native._live_tasks() > 0 and loop.time() < end:
                    await asyncio.sleep(0.05)
                assert _native._live_tasks() == 0, "a task of an earlier test still runs"
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(mirror.sync_async(url), 1)
                # Well inside the client's timeouts: only the abort ends it.
                end = loop.time() + 5
                while _native._live_tasks() > 0 and loop.time() < end:
                    await asyncio.sleep(0.05)
                return _native._live_tasks()
            finally:
                stop.set()
                thread.join(5)

    assert asyncio.run(main()) == 0, "the cancelled pull still runs"
    assert mirror.keys() == []
