"""delay_relay: a TCP relay that holds every byte for a fixed delay in each direction.

    delay_relay.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS

The stand-in for `tc qdisc ... netem delay` on kernels built without sch_netem (the netns
test uses netem when it can): each chunk read from one side is written to the other DELAY_MS
later, in order, so a connection through it sees DELAY_MS more one-way latency. Packet loss
is the kernel's business (iptables statistic), not the relay's. Runs until SIGTERM."""

import asyncio
import signal
import sys


async def forward(reader, writer, delay):
    """Copies reader to writer, each chunk `delay` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def send():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            queue.put_nowait((loop.time() + delay, data))
    except (ConnectionError, OSError):
        pass
    queue.put_nowait((0, None))
    try:
        await sender
    except (ConnectionError, OSError):
        pass
    writer.close()


async def main(lhost, lport, thost, tport, delay):
    async def serve(creader, cwriter):
        try:
            treader, twriter = await asyncio.open_connection(thost, tport)
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(forward(creader, twriter, delay), forward(treader, cwriter, delay))

    server = await asyncio.start_server(serve, lhost, lport)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    h, p, th, tp, ms = sys.argv[1:6]
    asyncio.run(main(h, int(p), th, int(tp), int(ms) / 1000.0))
