"""Servers for the wheel's tests, on loopback only: a Keyway server (the
`keyway` binary, $KEYWAY_BIN) and the reference namebump 0.0.16 server on
MariaDB ($REFERENCE_PYTHON, the reference venv's interpreter). A missing
one is an error with the reason, never a skip."""

import os
import pathlib
import secrets
import queue
import signal
import socket
import subprocess
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


class Served:
    def __init__(self, kind, process, host, port, pk):
        self.kind, self.process, self.host, self.port, self.pk = kind, process, host, port, pk

    @property
    def dest(self):
        return (self.host, self.port)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _lines(process, count, deadline_s=60):
    """The first `count` stdout lines, within a deadline (read on a thread:
    a buffered pipe cannot be polled line by line)."""
    found = queue.Queue()

    def reader():
        for line in process.stdout:
            found.put(line.strip())
        found.put(None)

    threading.Thread(target=reader, daemon=True).start()
    lines, end = [], time.monotonic() + deadline_s
    while len(lines) < count:
        try:
            line = found.get(timeout=max(0.0, end - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None:
            process.kill()
            raise RuntimeError("server did not start; got {0!r}".format(lines))
        lines.append(line)
    return lines


def _need(var, what):
    value = os.environ.get(var)
    if not value:
        raise RuntimeError("{0} is not set: it must name {1} (bindings/python/test.sh sets it)".format(var, what))
    return value


def start_keyway(tmp):
    binary = _need("KEYWAY_BIN", "the keyway binary")
    process = subprocess.Popen(
        [binary, "namebump", "serve", "--listen", "127.0.0.1:0", "--rate-limit", "0",
         "--db", "sqlite:{0}".format(tmp / "nb.db"), "--key", str(tmp / "server.key")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    listening, pk = _lines(process, 2)
    host, port = listening.split("=", 1)[1].rsplit(":", 1)
    return Served("keyway", process, host, int(port), bytes.fromhex(pk.split("=", 1)[1]))


def start_reference():
    from ecdsa import SECP256k1, SigningKey

    python = _need("REFERENCE_PYTHON", "the reference venv's python")
    key = SigningKey.generate(curve=SECP256k1)
    pk = key.get_verifying_key().to_string("compressed")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONNOUSERSITE="1", NB_PORT=str(port),
               NB_ENC_SK=key.to_string().hex(), NB_ENC_PK=pk.hex(),
               NB_DB_NAME="keyway_wheel_{0}_{1}".format(os.getpid(), secrets.token_hex(4)))
    process = subprocess.Popen(
        [python, str(ROOT / "tests" / "interop" / "namebump_ref_server.py")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    _lines(process, 2)
    return Served("reference", process, "127.0.0.1", port, pk)


@pytest.fixture(scope="session", params=["keyway", "reference"])
def server(request, tmp_path_factory):
    served = start_keyway(tmp_path_factory.mktemp("keyway")) if request.param == "keyway" else start_reference()
    yield served
    served.stop()


@pytest.fixture(scope="session")
def keyway_server(tmp_path_factory):
    served = start_keyway(tmp_path_factory.mktemp("keyway-only"))
    yield served
    served.stop()
