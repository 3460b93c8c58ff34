"""``python -m processors.fake_amazon --port 0``: serve the fake and print its URL."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from processors.fake_amazon.server import bind_socket, make_server
from processors.fake_amazon.state import FakeAmazon


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m processors.fake_amazon")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sellers", type=int, default=2)
    parser.add_argument("--print-sellers", action="store_true", help="also print seller credentials as JSON")
    args = parser.parse_args(argv)
    fake = FakeAmazon(seed=args.seed, seller_count=args.sellers)
    sock = bind_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    print(f"http://{host}:{port}", flush=True)
    if args.print_sellers:
        print(json.dumps([asdict(s) for s in fake.sellers]), flush=True)
    make_server(fake, log_level="info").run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
