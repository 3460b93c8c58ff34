"""Redis instructions per awaited add, counted by callgrind (repeatable, unlike CPU time).

    python -m benchmarks.add_callgrind [--n 2000] [--src DIR] [--bullmq] [--annotate]

Starts a private ``redis-server`` under ``valgrind --tool=callgrind``, adds 300 jobs to
warm up (library loaded, connection open, id block reserved), zeroes the counters, adds
``--n`` jobs one by one (awaited, one producer, the payload of benchmarks.compare), dumps
and prints instructions (Ir) per add and the commands per add (INFO commandstats).
Instruction counts leave out the kernel (socket reads and writes): they measure the
server's own work, which is what a change to the Lua or the call's arguments moves.

``--src DIR`` imports minique from DIR (another worktree), for an A/B in one run.
``--bullmq`` measures BullMQ-Node's ``queue.add`` the same way (benchmarks/node, after
``npm ci``). ``--annotate`` prints callgrind_annotate's inclusive top functions.
``--bulk`` adds with ``add_bulk`` in chunks of 500 instead (Ir per job).
``--client`` counts the producer's own instructions per add instead (user space only: the
socket calls' kernel time is not counted), with a plain redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).resolve().parent / "node"
WARM = 300

# BullMQ's producer, the loop of bench.mjs's add_one: warm up, wait for a line on stdin
# (the counters are zeroed then), add n, say "done".
NODE_ADDS = """
import { Queue } from 'bullmq';
import { createInterface } from 'node:readline';
const [port, n, warm] = process.argv.slice(1).map(Number);
const queue = new Queue('bench', { connection: { host: '127.0.0.1', port } });
const payload = (i) => ({ i, user: 'u-' + String(i % 100000).padStart(5, '0'),
                          tags: ['bench', 'noop'], n: 3.5 });
for (let i = 0; i < warm; i++) await queue.add('noop', payload(i));
console.log('warm');
const rl = createInterface({ input: process.stdin });
for await (const _ of rl) break;
for (let i = 0; i < n; i++) await queue.add('noop', payload(i));
console.log('done');
await queue.close();
process.exit(0);
"""


def _payload(i: int) -> dict[str, Any]:
    """The payload of benchmarks.compare (systems/_runner.py), without importing it."""
    return {"i": i, "user": f"u-{i % 100000:05d}", "tags": ["bench", "noop"], "n": 3.5}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _control(flag: str, pid: int) -> None:
    """callgrind_control -z (zero) or -d (dump) of process ``pid``."""
    subprocess.run(["callgrind_control", flag, str(pid)], check=True, stdout=subprocess.DEVNULL)


class Callgrind:
    """redis-server under callgrind on a free port."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="add-callgrind-")
        self.port = _free_port()
        binary = shutil.which("redis-server") or "redis-server"
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.dir}/cg.%p",
             binary, "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--bind", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.2)
        self.close()
        raise RuntimeError("redis-server under valgrind did not answer in 60 s")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def zero(self) -> None:
        _control("-z", self.proc.pid)

    def dump(self) -> tuple[int, str]:
        """Dumps the counters; returns the total Ir and the dump's path."""
        before = set(glob.glob(f"{self.dir}/cg.*"))
        _control("-d", self.proc.pid)
        new = sorted(set(glob.glob(f"{self.dir}/cg.*")) - before, key=os.path.getmtime)
        path = new[-1]
        for line in Path(path).read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1]), path
        raise RuntimeError(f"no totals in {path}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


def _commands(port: int) -> dict[str, int]:
    import redis

    r = redis.Redis(port=port)
    info = r.info("commandstats")
    r.close()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def _per(before: dict[str, int], after: dict[str, int], n: int) -> str:
    diff = {k: after[k] - before.get(k, 0) for k in after}
    diff = {k: v for k, v in diff.items() if v and k != "info"}
    return ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(diff.items(), key=lambda kv: -kv[1]))


async def _minique_adds(url: str, n: int, server: Callgrind, bulk: bool) -> tuple[int, str, str]:
    from minique import Queue

    q = Queue("bench", url=url)
    await q.obliterate(force=True)
    for i in range(WARM):
        await q.add("noop", _payload(i))
    before = _commands(server.port)
    server.zero()
    if bulk:
        for start in range(0, n, 500):
            await q.add_bulk([("noop", _payload(i)) for i in range(start, min(n, start + 500))])
    for i in range(0 if bulk else n):
        await q.add("noop", _payload(i))
    ir, path = server.dump()
    cmds = _per(before, _commands(server.port), n)
    await q.close()
    return ir, path, cmds


def _bullmq_adds(server: Callgrind, n: int) -> tuple[int, str, str]:
    proc = subprocess.Popen(["node", "--input-type=module", "-e", NODE_ADDS, str(server.port),
                             str(n), str(WARM)], cwd=NODE_DIR, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    if proc.stdout.readline().strip() != "warm":
        raise RuntimeError("the BullMQ producer did not warm up")
    before = _commands(server.port)
    server.zero()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    if proc.stdout.readline().strip() != "done":
        raise RuntimeError("the BullMQ producer did not finish")
    ir, path = server.dump()
    cmds = _per(before, _commands(server.port), n)
    proc.wait(timeout=30)
    return ir, path, cmds


def _client_adds(n: int, src: str | None, keep: str | None) -> None:
    """The producer's own instructions per add: this script again, under callgrind, with a
    plain redis-server (the child zeroes and dumps its own counters around the adds)."""
    with tempfile.TemporaryDirectory(prefix="add-callgrind-client-") as out:
        port = _free_port()
        server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port",
                                   str(port), "--save", "", "--appendonly", "no"],
                                  stdout=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            child = [sys.executable, "-m", "benchmarks.add_callgrind", "--n", str(n),
                     "--client-port", str(port), *(["--src", src] if src else [])]
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p",
                            *child], check=True, stderr=subprocess.DEVNULL,
                           cwd=Path(__file__).resolve().parent.parent)
            dumps = sorted(glob.glob(f"{out}/cg.*"), key=os.path.getmtime)
            dump = next(d for d in dumps if d.endswith(".1"))
            ir = next(int(line.split()[1]) for line in Path(dump).read_text().splitlines()
                      if line.startswith(("summary:", "totals:")))
            print(f"client: {ir / n:,.0f} Ir/add (the producer's process, user space)")
            if keep:
                shutil.copy(dump, keep)
        finally:
            server.terminate()
            server.wait()


async def _client_child(port: int, n: int) -> None:
    from minique import Queue

    q = Queue("bench", url=f"redis://127.0.0.1:{port}/0")
    await q.obliterate(force=True)
    for i in range(WARM):
        await q.add("noop", _payload(i))
    # Blocking on purpose: nothing else runs, and the counters must be zeroed (and dumped)
    # exactly between the adds.
    _control("-z", os.getpid())
    for i in range(n):
        await q.add("noop", _payload(i))
    _control("-d", os.getpid())
    await q.close()


def _annotate(path: str) -> None:
    for inclusive in ("yes", "no"):
        out = subprocess.run(["callgrind_annotate", f"--inclusive={inclusive}", path],
                             capture_output=True, text=True, check=False).stdout
        lines = out.splitlines()
        start = next((i for i, line in enumerate(lines) if "file:function" in line), 0)
        print(f"-- inclusive={inclusive}")
        print("\n".join(lines[start + 2:start + 52]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--src", default=None, help="import minique from this directory")
    parser.add_argument("--bullmq", action="store_true", help="measure BullMQ-Node instead")
    parser.add_argument("--annotate", action="store_true")
    parser.add_argument("--bulk", action="store_true", help="add_bulk in chunks of 500 instead")
    parser.add_argument("--keep", default=None, help="copy the dump to this path")
    parser.add_argument("--client", action="store_true",
                        help="count the producer's instructions instead of the server's")
    parser.add_argument("--client-port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.src:
        sys.path.insert(0, os.path.abspath(args.src))
    if args.client_port:
        asyncio.run(_client_child(args.client_port, args.n))
        return
    if args.client:
        _client_adds(args.n, args.src, args.keep)
        return
    server = Callgrind()
    try:
        if args.bullmq:
            label = "bullmq-node"
            ir, path, cmds = _bullmq_adds(server, args.n)
        else:
            import minique

            label = f"minique ({Path(minique.__file__).resolve().parent.parent})"
            ir, path, cmds = asyncio.run(_minique_adds(server.url, args.n, server, args.bulk))
        print(f"{label}: {ir / args.n:,.0f} Ir/add over {args.n} adds | {cmds}")
        if args.keep:
            shutil.copy(path, args.keep)
        if args.annotate:
            _annotate(path)
    finally:
        server.close()


if __name__ == "__main__":
    main()


__all__: list[Any] = []
