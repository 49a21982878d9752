"""The original Drayer (EternityForest/drayer, 2019) mirroring a Keyway
owner that deletes its newest record (issue 11, item 10): after each step
the original's `httpSync` from `keyway drayer serve` must leave its file
with exactly the owner's rows, and its dict API must read the same keys.

A seeded random run follows, with a second original mirror syncing
every third step.

Usage: python drayer_ref_tip_delete.py CHECKOUT KEYWAY_BINARY
CHECKOUT is a clone of the original repository (never committed here); run
in a venv with libnacl, msgpack==0.6.2, requests and cherrypy. Loopback
only. Prints one line per step and exits non-zero on the first mismatch.
"""
import logging
import os
import sqlite3
import subprocess
import sys
import tempfile

checkout, keyway = sys.argv[1], sys.argv[2]
sys.path.insert(0, checkout)
logging.disable(logging.CRITICAL)
import cherrypy  # noqa: E402

cherrypy.log.screen = False
from drayer import drayer  # noqa: E402

work = tempfile.mkdtemp()
owner = os.path.join(work, "owner.stream")


def kw(*args):
    out = subprocess.run([keyway, "drayer", *args], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("keyway %s: %s" % (" ".join(args), out.stderr))
    return out.stdout


pk = kw("new", owner).strip()
server = subprocess.Popen(
    [keyway, "drayer", "serve", "--listen", "127.0.0.1:0", owner],
    stdout=subprocess.PIPE,
    text=True,
)
url = "http://%s/" % server.stdout.readline().strip().split("=", 1)[1]
mirror = drayer.DrayerStream(os.path.join(work, "mirror.stream"), pubkey=pk, noServe=True)

ROWS = "SELECT id, type, key, hex(value), modified, prev, prevchange, hex(signature) FROM record ORDER BY modified"


def rows(path):
    with sqlite3.connect(path) as c:
        return c.execute(ROWS).fetchall()


def check(step, keys):
    mirror.httpSync(url)
    fresh = drayer.DrayerStream(os.path.join(work, "fresh%d.stream" % step), pubkey=pk, noServe=True)
    fresh.httpSync(url)
    want = rows(owner)
    for name, stream in (("mirror", mirror), ("fresh mirror", fresh)):
        got = rows(stream.fn)
        if got != want:
            sys.exit("step %d: %s differs\nowner %r\noriginal %r" % (step, name, want, got))
        held = sorted(k for (_, t, k, *_r) in got if t == "obj")
        if held != sorted(keys):
            sys.exit("step %d: %s holds %r, not %r" % (step, name, held, keys))
        for k in keys:
            if stream[k] != "v" + k:
                sys.exit("step %d: %s reads %r as %r" % (step, name, k, stream[k]))
    print("step %d ok: %d rows, obj keys %s" % (step, len(want), ",".join(sorted(keys))))


steps = [
    # Deleting the newest record while it is the latest change (skip rule).
    (["set a", "set b", "set c"], ["a", "b", "c"]),
    (["del c"], ["a", "b"]),
    # A new key takes the placeholder's place (it is the latest change).
    (["set d"], ["a", "b", "d"]),
    # The newest record, not the latest change (overshoot rule and crdr).
    (["set a", "del d"], ["a", "b"]),
    # The placeholder replaced when it is not the latest change.
    (["set b", "set e"], ["a", "b", "e"]),
    # Deleting down to nothing, the placeholder rewritten each time.
    (["del e", "del b"], ["a"]),
    (["del a"], []),
    (["set f", "set g", "del g", "set f"], ["f"]),
]
try:
    for step, (ops, keys) in enumerate(steps):
        for op in ops:
            verb, key = op.split()
            if verb == "set":
                kw("set", owner, key, "v" + key)
            else:
                kw("del", owner, key)
        check(step, keys)
    # Then a seeded random run: sets and updates of six keys; when the
    # newest record is the ID tip, one op in two deletes it.
    import random

    rng = random.Random(11)
    live = {"f"}
    deleted = 0
    lagging = drayer.DrayerStream(os.path.join(work, "lagging.stream"), pubkey=pk, noServe=True)
    for step in range(len(steps), len(steps) + 60):
        with sqlite3.connect(owner) as c:
            tip = c.execute("SELECT type, key FROM record ORDER BY id DESC LIMIT 1").fetchone()
        if tip and tip[0] == "obj" and rng.random() < 1 / 2:
            kw("del", owner, tip[1])
            live.discard(tip[1])
            deleted += 1
        else:
            key = "k%d" % rng.randrange(6)
            kw("set", owner, key, "v" + key)
            live.add(key)
        check(step, sorted(live))
        # One more original mirror, syncing every third step only.
        if step % 3 == 0:
            lagging.httpSync(url)
            if rows(lagging.fn) != rows(owner):
                sys.exit("step %d: the lagging mirror differs" % step)
    print("%d deletions of the newest record in the random run" % deleted)
finally:
    server.kill()
    cherrypy.engine.exit()
sys.stdout.flush()
os._exit(0)
