"""Server helpers users and tests import from ``namebump.server``.

The server itself is Keyway's (``keyway namebump serve``: SQLite,
PostgreSQL or MariaDB, no aiomysql); ``start_server`` says so."""

import asyncio


def get_v6_parts(ipr):
    """(glob_main, glob_extra, lan_id, iface_id) of an IPv6 address, as
    the reference splits the normalised (fully expanded) text."""
    ip_str = str(ipr)
    v6_glob_main = int(ip_str[:9].replace(":", ""), 16)
    v6_glob_extra = int(ip_str[10:14], 16)
    v6_lan_id = int(ip_str[15:19], 16)
    v6_iface_id = int(ip_str[20:].replace(":", ""), 16)
    return (v6_glob_main, v6_glob_extra, v6_lan_id, v6_iface_id)


def shutdown(loop, sig=None):
    """Cancel every task of ``loop`` (on SIGINT/SIGTERM)."""
    try:
        pending = asyncio.all_tasks(loop)
    except AttributeError:
        pending = asyncio.Task.all_tasks(loop)
    for t in pending:
        t.cancel()


async def start_server(*args, **kwargs):
    """Not provided by the wheel: run ``keyway namebump serve`` instead."""
    raise NotImplementedError(
        "the Keyway wheel has no Python server: run `keyway namebump serve` "
        "(see its --help); clients of this package work with any namebump server"
    )
