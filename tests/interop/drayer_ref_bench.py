"""The original Drayer (EternityForest/drayer, 2019) on the operations the
Keyway bench measures: owner inserts, record validation, and a full mirror
over loopback HTTP (its own CherryPy server on 127.0.0.1).

Usage: python drayer_ref_bench.py CHECKOUT RECORDS PORT
CHECKOUT is a clone of the original repository (never committed here); run
in a venv with libnacl, msgpack==0.6.2, requests and cherrypy. Prints one
JSON line.
"""
import json
import logging
import os
import sys
import tempfile
import time

checkout, records, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, checkout)
logging.disable(logging.CRITICAL)
import cherrypy  # noqa: E402

cherrypy.log.screen = False
from drayer import drayer  # noqa: E402

work = tempfile.mkdtemp()
owner = drayer.DrayerStream(os.path.join(work, "owner.stream"))
started = time.time()
for i in range(records):
    owner["key%d" % i] = "value number %d" % i
inserts = records / (time.time() - started)

ids = [r[0] for r in owner.getConn().execute("SELECT id FROM record").fetchall()]
started = time.time()
for i in ids:
    owner.validateRecord(i)
verified = len(ids) / (time.time() - started)

drayer.startServer(port)
mirror = drayer.DrayerStream(
    os.path.join(work, "mirror.stream"),
    pubkey=owner.pubkey,
    noServe=True,
)
started = time.time()
got = mirror.httpSync("http://127.0.0.1:%d/" % port)
synced = records / (time.time() - started)
held = mirror.getConn().execute("SELECT count(*) FROM record").fetchone()[0]
print(json.dumps({"records": records, "inserts": inserts, "verified": verified,
                  "synced": synced, "mirror_holds": held}))
sys.stdout.flush()
cherrypy.engine.exit()
os._exit(0)
