"""The namebump 0.0.16 reference Server, on loopback only, on a fresh
MariaDB database that it creates at start and drops at SIGTERM.

`python -m namebump.server` cannot be used in tests: it contacts public
STUN/NTP servers, probes 8.8.8.8, binds every address and hard-codes DB user
root (specs/namebump.md §10 item 29). This builds the reference Server with
the local clock and binds TCP+UDP on 127.0.0.1 only; all request handling is
the unmodified reference code.

Environment: NB_PORT, NB_ENC_SK, NB_ENC_PK, NB_DB_NAME, and optionally
NB_DB_HOST (127.0.0.1), NB_DB_USER (root), NB_DB_PW (empty).
Prints "listening TCP …" and "listening UDP …" once ready.
"""
import asyncio
import os
import signal
import sys
import time

import pymysql
from aionetiface import IP4, TCP, UDP, Interface, h_to_b
from namebump.server import Server

# specs/namebump-schema.sql, with `value` widened to the wire limit of 1024
# (the upstream 500 makes longer values fail: bug 16).
SCHEMA = [
    """CREATE TABLE ipv4s (
        id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, v4_val INT UNSIGNED NOT NULL,
        timestamp BIGINT UNSIGNED NOT NULL, PRIMARY KEY (id), UNIQUE KEY v4_val (v4_val)
    ) ENGINE=InnoDB""",
    """CREATE TABLE ipv6s (
        id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, v6_glob_main INT UNSIGNED NOT NULL,
        v6_glob_extra SMALLINT UNSIGNED NOT NULL, v6_lan_id SMALLINT UNSIGNED NOT NULL,
        v6_iface_id BIGINT UNSIGNED NOT NULL, timestamp BIGINT UNSIGNED NOT NULL,
        PRIMARY KEY (id), UNIQUE KEY v6_val (v6_glob_main, v6_glob_extra, v6_lan_id, v6_iface_id)
    ) ENGINE=InnoDB""",
    """CREATE TABLE names (
        id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, name VARBINARY(50) NOT NULL,
        value VARBINARY(1024) NOT NULL, owner_pub BINARY(33) NOT NULL,
        af TINYINT UNSIGNED NOT NULL, ip_id BIGINT UNSIGNED NOT NULL,
        timestamp BIGINT UNSIGNED NOT NULL, updated BIGINT UNSIGNED NOT NULL,
        PRIMARY KEY (id), UNIQUE KEY name (name)
    ) ENGINE=InnoDB""",
]


def admin():
    return pymysql.connect(host=os.environ.get("NB_DB_HOST", "127.0.0.1"),
                           user=os.environ.get("NB_DB_USER", "root"),
                           password=os.environ.get("NB_DB_PW", ""), autocommit=True)


def create(db):
    with admin() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE `%s`" % db)
        cur.execute("USE `%s`" % db)
        for statement in SCHEMA:
            cur.execute(statement)


def drop(db):
    with admin() as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS `%s`" % db)


async def main():
    db = os.environ["NB_DB_NAME"]
    create(db)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        serv = Server(os.environ.get("NB_DB_USER", "root"), os.environ.get("NB_DB_PW", ""), db,
                      h_to_b(os.environ["NB_ENC_SK"]), h_to_b(os.environ["NB_ENC_PK"]), time)
        nic = Interface("default")
        for proto in (TCP, UDP):
            route = nic.route(IP4)
            await route.bind(ips="127.0.0.1", port=int(os.environ["NB_PORT"]))
            _, pipe = await serv.add_listener(proto, route)
            print("listening", "TCP" if proto == TCP else "UDP", pipe.sock.getsockname(), flush=True)
        await stop.wait()
    finally:
        drop(db)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
