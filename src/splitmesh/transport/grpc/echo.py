"""What gRPC itself costs on this machine: rounds on ``Session`` streams to echo
processes that run no splitmesh code (no codec, no node checks, no model), with mutual
TLS, the threaded server the nodes run and the asyncio client the coordinator runs.

A mesh's step over gRPC cannot cost less than its rounds do here, so a benchmark that
reports this beside its own runs shows how much of the network's cost is gRPC's own.

    python -m splitmesh.transport.grpc.echo --nodes 3 --rounds 2000 --payload 16384
"""

from __future__ import annotations

import argparse
import asyncio
import select
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

import grpc
import grpc.aio

from splitmesh.errors import TransportError
from splitmesh.transport.grpc import splitmesh_pb2 as pb
from splitmesh.transport.grpc import splitmesh_pb2_grpc as pb_grpc
from splitmesh.transport.grpc.server import OWN_PORT
from splitmesh.transport.grpc.tls import TlsFiles, create_certificates

_CLIENT = "echo-client"
_MODULE = "splitmesh.transport.grpc.echo"  # how an echo node is started (not __main__)
_READY = "echo listening on port "
_START_S = 60.0  # an echo node that has not said its port by then will not
_ANY_SIZE = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


class _Echo(pb_grpc.PartyServicer):
    def Session(self, requests, context):
        yield from requests  # each request back as it came: nothing decoded, nothing checked


def serve(tls_dir: Path, name: str) -> None:
    """One echo node: listens on a free loopback port, says which on stdout, serves until
    its stdin closes (the measuring process is gone or done)."""
    ca, cert, key = TlsFiles.for_party(tls_dir, name).read()
    creds = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=[*_ANY_SIZE, *OWN_PORT])
    pb_grpc.add_PartyServicer_to_server(_Echo(), server)
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    print(f"{_READY}{port}", flush=True)
    sys.stdin.read()
    server.stop(None)


def echo_rounds(
    nodes: int, rounds: int, *, payload: int = 0, repeats: int = 3, gap: float = 0.0
) -> dict:
    """Seconds a round takes (median of ``repeats`` timings of ``rounds`` rounds): one
    request of ``payload`` bytes to each of ``nodes`` echo processes at once, every reply
    read back, as the coordinator sends a step's messages.

    ``gap``: seconds of the client's own work before each round (not timed), as a
    coordinator computes between its rounds: the nodes idle meanwhile, and a process woken
    from idle answers later than one kept busy by rounds back to back."""
    if nodes < 1 or rounds < 1 or payload < 0 or gap < 0:
        raise ValueError("echo_rounds needs nodes >= 1, rounds >= 1, payload >= 0 and gap >= 0")
    names = [f"echo-{i}" for i in range(nodes)]
    with tempfile.TemporaryDirectory(prefix="splitmesh-echo-") as tmp:
        tls = Path(tmp)
        create_certificates(tls, [_CLIENT, *names])  # a throwaway CA, as a mesh's own
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", _MODULE, "--serve", str(tls), "--name", n],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for n in names
        ]
        try:
            ports = [_port(p, n) for p, n in zip(procs, names, strict=True)]
            ca, cert, key = TlsFiles.for_party(tls, _CLIENT).read()
            creds = grpc.ssl_channel_credentials(ca, key, cert)
            where = dict(zip(names, ports, strict=True))
            times = _measure(where, creds, rounds, payload, repeats, gap)
        finally:
            for p in procs:
                p.stdin.close()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
    return {
        "nodes": nodes,
        "payload_bytes": payload,
        "gap_seconds": gap,
        "rounds": rounds,
        "seconds_per_round": statistics.median(times),
        "repeats": times,
    }


def _port(proc: subprocess.Popen, name: str) -> int:
    said, _, _ = select.select([proc.stdout], [], [], _START_S)
    line = proc.stdout.readline() if said else "(nothing)"
    if not line.startswith(_READY):
        raise TransportError(f"echo node {name!r} did not start (it said {line.strip()!r})")
    return int(line[len(_READY) :])


def _measure(
    ports: dict[str, int], creds, rounds: int, payload: int, repeats: int, gap: float
) -> list[float]:
    # as GrpcTransport does: a private loop, one stream per node, each round run to its end
    loop = asyncio.new_event_loop()
    request = pb.Envelope(type="Echo", tensors=[pb.Tensor(name="x", data=b"\0" * payload)])

    async def open_streams():
        channels = [
            grpc.aio.secure_channel(
                f"127.0.0.1:{port}",
                creds,
                options=[*_ANY_SIZE, ("grpc.ssl_target_name_override", name)],
            )
            for name, port in ports.items()
        ]
        return channels, [pb_grpc.PartyStub(c).Session() for c in channels]

    async def one(stream, seq: int) -> None:
        await stream.write(request)
        reply = await stream.read()
        if (
            reply is grpc.aio.EOF
            or reply.seq != seq
            or reply.tensors[0].data != request.tensors[0].data
        ):
            raise TransportError("an echo node sent back something else than it got")

    async def round_(seq: int) -> None:
        request.seq = seq  # one request, shared by every node's stream in a round
        await asyncio.gather(*(one(s, seq) for s in streams))

    try:
        channels, streams = loop.run_until_complete(open_streams())
        for seq in range(min(rounds, 200)):  # connections, TLS handshakes, warm caches
            loop.run_until_complete(round_(seq))
        times = []
        for _ in range(repeats):
            spent = 0.0
            for seq in range(rounds):
                _work(gap)
                t0 = time.perf_counter()
                loop.run_until_complete(round_(seq))
                spent += time.perf_counter() - t0
            times.append(spent / rounds)
        for s in streams:  # a clean end: half-close, then the node's OK
            loop.run_until_complete(s.done_writing())
            loop.run_until_complete(s.code())
        for c in channels:
            loop.run_until_complete(c.close())
        return times
    finally:
        loop.close()


def _work(seconds: float) -> None:
    """Keep this process busy (not asleep) for ``seconds``, as a coordinator computing."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--payload", type=int, default=16384, help="bytes each way per message")
    ap.add_argument("--gap-ms", type=float, default=0.0, help="client work before each round")
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # an echo node's TLS folder
    ap.add_argument("--name", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve is not None:
        serve(args.serve, args.name)
        return
    got = echo_rounds(args.nodes, args.rounds, payload=args.payload, gap=args.gap_ms / 1e3)
    print(
        f"gRPC alone: a round to {args.nodes} echo process(es), {args.payload} bytes each way, "
        f"mutual TLS, {args.gap_ms:g} ms of work between rounds: "
        f"{got['seconds_per_round'] * 1e3:.3f} ms (median of "
        f"{', '.join(f'{t * 1e3:.3f}' for t in got['repeats'])})"
    )


if __name__ == "__main__":
    main()
