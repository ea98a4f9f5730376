#!/usr/bin/env python
"""Compare streaming multipart parsers on the same body: what ``put_uploads()`` parses with.

One body (a text field, then a file part of ``--size-mib`` random bytes) is
fed in chunks of 16 KiB and 64 KiB to Werkzeug's sans-IO ``MultipartDecoder``
(what ``put_uploads()`` used before issue 14), python-multipart's
``MultipartParser`` (what it uses now), and our ``MultipartParser`` around it
(headers read, events made). With ``--baseline SRC`` it also times the
``MultipartParser`` of the ``async_hashfs`` package in folder ``SRC`` (the
wrapper around Werkzeug's decoder, before issue 14). Each contender counts
the file bytes it was given, which must be the file's size. Rounds are interleaved; the table shows
median MiB/s. No disk, no network; it reports and always exits 0.

Run ``python benchmarks/bench_multipart.py`` (``--rounds``, ``--size-mib``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import python_multipart
from werkzeug.sansio.multipart import Data, Epilogue, MultipartDecoder, NeedData

try:
    from async_hashfs._web import MultipartParser, PartData
except ImportError:  # run from a checkout without an install
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from async_hashfs._web import MultipartParser, PartData

MIB = 1 << 20
BOUNDARY = "bench-" + "5f" * 12


def make_body(size: int) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="title"\r\n\r\nbench\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + os.urandom(size) + f"\r\n--{BOUNDARY}--\r\n".encode()


def werkzeug(chunks: list[bytes]) -> int:
    decoder = MultipartDecoder(BOUNDARY.encode())
    total = 0
    for chunk in [*chunks, None]:
        decoder.receive_data(chunk)
        while not isinstance(event := decoder.next_event(), NeedData | Epilogue):
            if isinstance(event, Data):
                total += len(event.data)
        if isinstance(event, Epilogue):
            break
    return total


def python_multipart_parser(chunks: list[bytes]) -> int:
    total = 0

    def on_part_data(data: bytes, start: int, end: int) -> None:
        nonlocal total
        total += end - start

    parser = python_multipart.MultipartParser(BOUNDARY, {"on_part_data": on_part_data})
    for chunk in chunks:
        parser.write(chunk)
    parser.finalize()
    return total


def ours(chunks: list[bytes]) -> int:
    parser = MultipartParser(f"multipart/form-data; boundary={BOUNDARY}")
    total = 0
    for chunk in chunks:
        total += sum(len(e.data) for e in parser.feed(chunk) if isinstance(e, PartData))
    total += sum(len(e.data) for e in parser.close() if isinstance(e, PartData))
    return total


CONTENDERS: dict[str, Callable[[list[bytes]], int]] = {
    "Werkzeug MultipartDecoder (alone)": werkzeug,
    "python-multipart MultipartParser": python_multipart_parser,
    "async_hashfs MultipartParser (now)": ours,
}


def wrapper_before(src: str) -> Callable[[list[bytes]], int]:
    """Our ``MultipartParser`` as the ``async_hashfs`` package in folder ``src`` has it."""
    from bench_store import load_baseline  # this folder is on sys.path when run as a script

    load_baseline(src)
    before: Any = importlib.import_module("async_hashfs_baseline._web")

    def parse(chunks: list[bytes]) -> int:
        parser = before.MultipartParser(f"multipart/form-data; boundary={BOUNDARY}")
        total = 0
        for chunk in chunks:
            events = parser.feed(chunk)
            total += sum(len(e.data) for e in events if isinstance(e, before.PartData))
        total += sum(len(e.data) for e in parser.close() if isinstance(e, before.PartData))
        return total

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--baseline", metavar="SRC", help="also time SRC's MultipartParser")
    args = parser.parse_args(argv)
    if args.baseline:
        CONTENDERS["async_hashfs MultipartParser (before)"] = wrapper_before(args.baseline)
    size = args.size_mib * MIB
    body = make_body(size)
    expected = size + len("bench")  # the text field's bytes count too
    print(f"# multipart parsers, {args.size_mib} MiB file part, {args.rounds} rounds")
    print()
    print("| parser | 16 KiB chunks | 64 KiB chunks |")
    print("| --- | ---: | ---: |")
    results: dict[tuple[str, int], list[float]] = {}
    for round_ in range(args.rounds):
        names = list(CONTENDERS)
        names = names[round_ % len(names) :] + names[: round_ % len(names)]
        for chunk_size in (16 << 10, 64 << 10):
            chunks = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)]
            for name in names:
                started = time.perf_counter()
                got = CONTENDERS[name](chunks)
                elapsed = time.perf_counter() - started
                if got != expected:
                    raise AssertionError(f"{name}: {got} bytes, expected {expected}")
                results.setdefault((name, chunk_size), []).append(elapsed)
    for name in CONTENDERS:
        rates = [size / MIB / statistics.median(results[name, n]) for n in (16 << 10, 64 << 10)]
        print(f"| {name} | {rates[0]:,.0f} MiB/s | {rates[1]:,.0f} MiB/s |")
    print()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
