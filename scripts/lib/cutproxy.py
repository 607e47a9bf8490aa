#!/usr/bin/env python3
"""A TCP proxy on loopback that cuts connections, for HTTP shell tests.

Forwards every connection to --upstream. After --cut-after bytes have gone
from clients to the server (counted over all connections), it cuts the
connection carrying them: the server sees exactly that many bytes and then
an end of stream (as when a client dies), the client sees a reset. It makes
--cuts such cuts, then forwards everything. --rate slows each connection's
upload to that many bytes/s. Prints `listening on PORT`, keeps --stats
updated with `up=N down=N cuts=N` (bytes client->server, server->client),
and exits by itself after --max-seconds or on SIGTERM.
"""

import argparse
import signal
import socket
import struct
import sys
import threading
import time

lock = threading.Lock()
state = {"up": 0, "down": 0, "cuts": 0}


def write_stats(path):
    if path:
        with open(path + ".tmp", "w") as f:
            f.write("up=%(up)d down=%(down)d cuts=%(cuts)d\n" % state)
        import os

        os.replace(path + ".tmp", path)


def pipe(args, src, dst, upstream_dir, peer_pair):
    client, server = peer_pair
    try:
        while True:
            data = src.recv(16384 if args.rate else 65536)
            if not data:
                break
            cut = False
            with lock:
                if upstream_dir:
                    room = None
                    if args.cut_after is not None and state["cuts"] < args.cuts:
                        room = args.cut_after - state["up"]
                        if room <= len(data):
                            data = data[: max(room, 0)]
                            cut = True
                    state["up"] += len(data)
                    if cut:
                        state["cuts"] += 1
                        # The next cut comes after as many bytes again.
                        args.cut_after = state["up"] + args.cut_after_step
                else:
                    state["down"] += len(data)
                write_stats(args.stats)
            if data:
                dst.sendall(data)
                if upstream_dir and args.rate:
                    time.sleep(len(data) / args.rate)
            if cut:
                # Server: the bytes so far, then FIN. Client: RST.
                try:
                    server.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                client.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                client.close()
                return
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    except OSError:
        for s in (client, server):
            try:
                s.close()
            except OSError:
                pass


def serve(args, conn):
    host, port = args.upstream.rsplit(":", 1)
    try:
        up = socket.create_connection((host, int(port)), timeout=10)
        up.settimeout(None)
    except OSError:
        conn.close()
        return
    pair = (conn, up)
    threading.Thread(target=pipe, args=(args, conn, up, True, pair), daemon=True).start()
    threading.Thread(target=pipe, args=(args, up, conn, False, pair), daemon=True).start()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--cut-after", type=int)
    p.add_argument("--cuts", type=int, default=1)
    p.add_argument("--stats")
    p.add_argument("--rate", type=int, help="bytes/s client->server, per connection")
    p.add_argument("--max-seconds", type=int, default=300)
    args = p.parse_args()
    args.cut_after_step = args.cut_after or 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    ls.settimeout(0.5)
    print("listening on %d" % ls.getsockname()[1], flush=True)
    write_stats(args.stats)
    end = time.time() + args.max_seconds
    while time.time() < end:
        try:
            conn, _ = ls.accept()
        except socket.timeout:
            continue
        serve(args, conn)


if __name__ == "__main__":
    main()
