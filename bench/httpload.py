#!/usr/bin/env python3
"""HTTP load on onair: CLIENTS keep-alive clients polling GET /api/status as fast as they are
answered, and SSE clients holding GET /api/events open, for SECONDS. Prints requests, errors and
latency percentiles (ms). Standard library only.
usage: httpload.py PORT TOKEN [--clients 200] [--sse 50] [--seconds 60] [--cookie SESSION]
With --cookie the requests carry the control room's session cookie instead of the token."""
import argparse, asyncio, statistics, time

async def poller(port, auth, until, lat, errors):
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        errors.append("connect"); return
    req = (f"GET /api/status HTTP/1.1\r\nHost: bench\r\n{auth}\r\n\r\n").encode()
    while time.monotonic() < until:
        t = time.monotonic()
        try:
            w.write(req); await w.drain()
            head = await r.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await r.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n")[0].decode())
        except Exception as e:  # noqa: BLE001 - every failure is counted, none stops the run
            errors.append(type(e).__name__); return
        lat.append((time.monotonic() - t) * 1000)
    w.close()

async def sse(port, auth, until, events, errors):
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write((f"GET /api/events HTTP/1.1\r\nHost: bench\r\n{auth}\r\n\r\n").encode())
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            errors.append("sse " + head.split(b"\r\n")[0].decode()); return
        while time.monotonic() < until:
            try:
                chunk = await asyncio.wait_for(r.read(4096), timeout=max(0.1, until - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if not chunk:
                errors.append("sse closed"); return
            events.append(chunk.count(b"\nevent:") + chunk.startswith(b"event:"))
        w.close()
    except Exception as e:  # noqa: BLE001
        errors.append("sse " + type(e).__name__)

async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int); ap.add_argument("token")
    ap.add_argument("--clients", type=int, default=200); ap.add_argument("--sse", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--cookie", help="a session cookie value (POST /api/login) instead of the token")
    a = ap.parse_args()
    # the one header that authenticates every request
    auth = f"Cookie: onair_session={a.cookie}" if a.cookie else f"Authorization: Bearer {a.token}"
    until = time.monotonic() + a.seconds
    lat, errors, events = [], [], []
    await asyncio.gather(*[sse(a.port, auth, until, events, errors) for _ in range(a.sse)],
                         *[poller(a.port, auth, until, lat, errors) for _ in range(a.clients)])
    lat.sort()
    pct = lambda p: round(lat[min(len(lat) - 1, int(len(lat) * p))], 1) if lat else None
    print(f"/api/status: {len(lat)} requests in {a.seconds:.0f} s from {a.clients} clients "
          f"({len(lat) / a.seconds:.0f}/s); latency p50 {pct(0.5)} ms, p99 {pct(0.99)} ms, "
          f"max {round(lat[-1], 1) if lat else None} ms; {a.sse} SSE clients saw {sum(events)} events; "
          f"errors {len(errors)} {sorted(set(errors))[:5]}")

asyncio.run(main())
