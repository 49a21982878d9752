"""Ends while a native thread is inside Python, in a clock that takes
three seconds to answer (longer than the exit guard used to wait); the
clock writes "left" to argv[1] once it returns. Exits 0 only if the
interpreter waited for it."""

import asyncio
import socket
import sys
import threading
import time

import namebump

entered = threading.Event()


class SlowClock:
    def time(self):
        if threading.current_thread() is threading.main_thread():
            return time.time()
        entered.set()
        time.sleep(3)
        with open(sys.argv[1], "w") as out:
            out.write("left")
        return time.time()


async def main():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))
        dest = ("127.0.0.1", hole.getsockname()[1])
        client = await namebump.Client(dest, namebump.Keypair.generate().vkc, sys_clock=SlowClock())
        asyncio.ensure_future(client.get("name"))
        while not entered.is_set():
            await asyncio.sleep(0.01)


asyncio.run(main())
