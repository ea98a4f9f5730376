"""Store a few files in a local folder store and read them back.

Run ``python examples/quickstart.py`` with async-hashfs installed; in a
checkout, ``.venv/bin/python examples/quickstart.py`` once ``python3 dev.py
test`` (or ``demo``) has made ``.venv``. The store lives in
``./quickstart-store``.
"""

from __future__ import annotations

import anyio

from async_hashfs import AsyncHashFS


async def main() -> None:
    fs = AsyncHashFS("quickstart-store", max_size=64 << 20)
    hello = await fs.put(b"hello, content-addressed world\n", extension="txt")
    again = await fs.put(b"hello, content-addressed world\n", extension="txt")
    print(f"stored  {hello.relpath}  (duplicate: {hello.is_duplicate})")
    print(f"again   {again.relpath}  (duplicate: {again.is_duplicate})")

    async def chunks():
        for i in range(8):
            yield bytes([i]) * (256 << 10)

    streamed = await fs.put(chunks(), extension="bin")
    print(f"streamed 2 MiB into {streamed.relpath}")
    async with fs.open(hello.id) as file:
        print("read back:", (await file.read()).decode().strip())
    print(
        f"{await fs.count()} files, {await fs.size()} bytes, all verified:",
        all([await fs.verify(path) async for path in fs.files()]),
    )


if __name__ == "__main__":
    anyio.run(main)
