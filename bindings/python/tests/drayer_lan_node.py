"""One DrayerUDP node for test_drayer_lan.py, run inside the network
namespace that test creates (never on a real network).

    drayer_lan_node.py owner DIR   creates DIR/owner.drayer with 5 records,
                                   prints its public key, serves it and
                                   joins discovery until killed
    drayer_lan_node.py mirror DIR PUBKEY
                                   joins discovery with an empty mirror and
                                   prints its record count once it holds 5
                                   (or after 15 s)
"""
import sys
import time

import drayer
from drayer import DrayerStream

role, where = sys.argv[1], sys.argv[2]
if role == "owner":
    owner = DrayerStream(where + "/owner.drayer")
    for i in range(5):
        owner["k{0}".format(i)] = i
    drayer.startServer(port=0, host="127.0.0.1")
    drayer.startLocalDiscovery()
    print(owner.getAttr("PublicKey"), flush=True)
    time.sleep(30)
else:
    mirror = DrayerStream(where + "/mirror.drayer", pubkey=sys.argv[3])
    drayer.startServer(port=0, host="127.0.0.1")
    drayer.startLocalDiscovery()
    deadline = time.monotonic() + 15
    while len(mirror.keys()) < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    print(len(mirror.keys()), flush=True)
