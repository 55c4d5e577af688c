#!/usr/bin/env python3
"""A TCP relay that holds every chunk DELAY_MS before forwarding it, both
ways: a link's propagation delay where the kernel has no netem (the bridge
tests' emulated long link, with tc tbf for its bandwidth and drops).

    delay_relay.py LISTEN_HOST:PORT TARGET_HOST:PORT DELAY_MS

Prints "listening" on stderr once it accepts connections. What it holds is
bounded (HOLD_BYTES per direction, small socket buffers), so that a sender
faster than the link feels the link's pace instead of filling the relay.
"""
import asyncio
import socket
import sys

CHUNK = 64 * 1024
# 20 ms at 200 Mbit/s: enough to keep the link busy across the hold.
HOLD_BYTES = 512 * 1024
SOCKET_BUFFER = 128 * 1024


def addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


async def pump(reader, writer, delay):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()
    held = 0
    room = asyncio.Condition()

    async def read():
        nonlocal held
        while True:
            async with room:
                await room.wait_for(lambda: held < HOLD_BYTES)
            data = await reader.read(CHUNK)
            held += len(data)
            await queue.put((loop.time() + delay, data))
            if not data:
                return

    async def write():
        nonlocal held
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
            async with room:
                held -= len(data)
                room.notify_all()

    try:
        await asyncio.gather(read(), write())
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def small_buffers(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def main():
    listen, target, delay = addr(sys.argv[1]), addr(sys.argv[2]), float(sys.argv[3]) / 1e3

    async def client(r1, w1):
        small_buffers(w1.get_extra_info("socket"))
        try:
            out = socket.create_connection(target)
        except OSError:
            w1.close()
            return
        small_buffers(out)
        out.setblocking(False)
        r2, w2 = await asyncio.open_connection(sock=out)
        await asyncio.gather(pump(r1, w2, delay), pump(r2, w1, delay))

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    small_buffers(sock)
    sock.bind(listen)
    server = await asyncio.start_server(client, sock=sock)
    print("listening", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
