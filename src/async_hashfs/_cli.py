"""The ``hashfs`` command group: look after a store from the shell.

The same group runs standalone (``async-hashfs --root DIR …``,
``python -m async_hashfs``) and under ``flask hashfs …`` / ``quart hashfs …``
on the app's configured store. Commands work on a blocking
:class:`~async_hashfs.SyncHashFS`; long ones show progress on a terminal.
``put`` creates the store's folder as ``SyncHashFS`` does; the other commands
need it to exist. ``--help`` works anywhere, with or without a store.

Exit codes: 0 done; 1 a check found problems (``verify``, files ``repair`` left); 2 bad usage: an
option value or argument that is wrong, a reference that names nothing, a file
that cannot be read or written; 3 the store's root is missing, is not a folder
or its disk refused (permissions, a full disk); 4 an s3:// root cannot be used
(extra not installed, credentials, bucket, server); 5 another sweep of the
same s3:// store is running (``sweep``); 130 interrupted; 141 the
reader of standard output went away (``… | head``), as a shell reports them.
Every error is one line on standard error, ``Error: `` and what was wrong.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import shutil
import stat
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import IO, Any, NoReturn

import click

from ._engine import CHUNK_SIZE
from ._exceptions import HashFSError, InvalidId, NotFound, SweepRunning
from ._layout import Layout, normalize_extension
from ._sweep import parse_duration
from ._sync import SyncHashFS
from ._tus_store import PartialReport, partial_store
from ._version import __version__

__all__ = ["app_group", "cli", "make_group"]

#: Builds the store; called with ``create=True`` by commands that may create it.
StoreFactory = Callable[..., SyncHashFS]

#: A check found a problem: ``verify`` a file whose bytes no longer match its
#: address, ``repair`` files it left where they are. Never used for errors.
EXIT_PROBLEM_FOUND = 1
#: Interrupted (Ctrl-C), and output cut short (``… | head``): what a shell
#: reports for SIGINT and SIGPIPE, so that 1 keeps meaning "a check found a problem".
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class CommandError(click.ClickException):
    """Bad usage: an option value, argument, reference or file that is wrong (exit 2).

    Shown as one ``Error: …`` line, like each subclass.
    """

    exit_code = 2


class NoStore(CommandError):
    """The local store's root is missing, not a folder, or its disk refused (exit 3)."""

    exit_code = 3


class BucketUnusable(CommandError):
    """An s3:// root cannot be used: no extra, credentials, bucket or server (exit 4)."""

    exit_code = 4


class StoreBusy(CommandError):
    """Another sweep of the s3:// store holds its lease (exit 5): try again later."""

    exit_code = 5


def _store(ctx: click.Context, *, create: bool = False) -> SyncHashFS:
    factory: StoreFactory = ctx.find_root().meta["hashfs.store"]
    return factory(create=create)


def _emit(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data) if as_json else text)


class _Progress:
    """A progress bar on a terminal (files, bytes, rate, ETA); silent otherwise."""

    def __init__(self, label: str, total_bytes: int, quiet: bool) -> None:
        self._bar: Any = None
        if not quiet and sys.stderr.isatty():
            self._bar = click.progressbar(
                length=max(total_bytes, 1),
                label=label,
                file=sys.stderr,
                show_eta=True,
                show_percent=True,
                item_show_func=lambda item: item,
            )
            self._bar.__enter__()
        self.files = 0
        self.bytes = 0
        self._started = time.monotonic()

    def advance(self, size: int) -> None:
        self.files += 1
        self.bytes += size
        if self._bar is not None:
            rate = self.bytes / max(time.monotonic() - self._started, 1e-9) / (1 << 20)
            self._bar.update(size, f"{self.files} files, {rate:.0f} MiB/s")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def _sizes(store: Any) -> Iterator[tuple[str, int]]:
    """``(relpath, size)`` of every stored file, as the store lists them."""
    for path, size in store._engine.sizes():
        yield store.layout.inside(path) or path, size


def open_store(
    root: str | None, depth: int, width: int, algorithm: str, *, create: bool = False
) -> SyncHashFS:
    """Return the store at ``root`` for a command, or fail with one line and its exit code.

    A local root must be a folder; with ``create`` (``put``) it may be missing
    and is then created by the first put, as ``SyncHashFS`` does.

    Raises:
        CommandError: no root given, a bad ``depth``/``width``/``algorithm`` or
            root (exit 2), a local root that is missing or not a folder (exit 3),
            an s3:// root without the ``s3`` extra (exit 4).
    """
    if not root:
        raise CommandError("no store given: pass --root DIR or set HASHFS_ROOT_FOLDER")
    try:
        store = SyncHashFS(root, depth=depth, width=width, algorithm=algorithm)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    except ModuleNotFoundError as exc:  # an s3:// root without the ``s3`` extra
        raise BucketUnusable(str(exc)) from exc
    if store.layout.is_url:
        return store  # the bucket answers on first use; errors there are exit 4
    if os.path.isdir(store.root):
        return store
    if os.path.lexists(store.root) or not create:
        raise NoStore(f"store root {root!r} is not a folder")
    return store


def make_group(name: str = "hashfs", factory: StoreFactory | None = None) -> click.Group:
    """Build the command group; ``factory`` gives the store (else ``--root`` options do).

    Options are only read here: the store is opened when a command asks for
    it, so ``--help`` of the group and of every command works without one.
    """

    def attach(ctx: click.Context, **options: Any) -> None:
        if factory is not None:
            ctx.meta["hashfs.store"] = factory
            return

        def build(create: bool = False) -> SyncHashFS:
            return open_store(**options, create=create)

        ctx.meta["hashfs.store"] = build

    params: list[click.Parameter] = []
    if factory is None:
        params = [
            click.Option(
                ["--root"],
                envvar="HASHFS_ROOT_FOLDER",
                metavar="DIR|s3://BUCKET/PREFIX",
                help="The store (or $HASHFS_ROOT_FOLDER); put creates a missing folder.",
            ),
            click.Option(["--depth"], type=int, default=4, show_default=True),
            click.Option(["--width"], type=int, default=1, show_default=True),
            click.Option(["--algorithm"], default="sha256", show_default=True),
        ]
    group = _Group(
        name,
        params=params,
        callback=click.pass_context(attach),
        help="Look after a content-addressable store: put, get, check, repair, clean, sweep, "
        "migrate.",
        epilog="Exit codes: 0 done, 1 a check found a problem (verify: a mismatch; repair: "
        "files left), 2 bad usage or reference, 3 no usable store folder, 4 an s3:// root "
        "that cannot be used, 5 another sweep of the same s3:// store running (sweep), "
        "130 interrupted, 141 output cut short.",
    )
    if factory is None:
        click.version_option(
            __version__, "--version", prog_name="async-hashfs", message="%(prog)s %(version)s"
        )(group)
    for command in _COMMANDS:
        group.add_command(command)
    return group


class _Group(click.Group):
    """Runs a command; every user error is one ``Error: …`` line and its exit code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run as a program: click's own, but usage errors are one line too."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            hint = ""
            if exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            click.echo(f"Error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(EXIT_INTERRUPTED)
        # Without standalone mode click returns an exit code, or the command's
        # own return value (None for all of ours).
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            problem = _storage_problem(exc)
            if problem is not None:
                raise BucketUnusable(problem) from exc
            if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
                _discard_stdout()  # the reader left: nothing to say, and no second EPIPE
                raise click.exceptions.Exit(EXIT_BROKEN_PIPE) from exc
            if isinstance(exc, OSError):
                raise NoStore(_disk_problem(exc)) from exc
            raise


def _discard_stdout() -> None:
    """Point standard output at the null device, so flushing it at exit cannot fail."""
    with contextlib.suppress(OSError, ValueError):  # no file descriptor (a test runner)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def _storage_problem(exc: BaseException) -> str | None:
    """One line for an error that keeps an s3:// root from being used, else ``None``."""
    if "async_hashfs._s3" not in sys.modules:
        return None
    from ._s3 import describe_error

    return describe_error(exc)


def _disk_problem(exc: OSError) -> str:
    """One line for a disk error met on the store: what failed, and where."""
    where = f": {exc.filename}" if exc.filename else ""
    return f"the store's disk refused: {exc.strerror or exc}{where}"


def _fail(message: str) -> NoReturn:
    raise CommandError(message)


# -- commands -----------------------------------------------------------------

_json = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
_quiet = click.option("--quiet", "-q", is_flag=True, help="No progress bar.")


@click.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--extension", "-e", default=None, help="Extension to store the files with.")
@_json
@_quiet
@click.pass_context
def put(
    ctx: click.Context, files: tuple[str, ...], extension: str | None, as_json: bool, quiet: bool
) -> None:
    """Store FILES (- reads standard input); print each id and relpath.

    Creates the store's folder if it is missing. Stops at the first file that
    cannot be read (exit 2), after printing those already stored.
    """
    try:
        normalize_extension(extension)
    except HashFSError as exc:
        _fail(f"--extension: {exc}")
    store = _store(ctx, create=True)
    sizes = [0 if f == "-" else _readable_size(f) for f in files]
    progress = _Progress("put", sum(sizes), quiet)
    results = []
    failed: str | None = None
    try:
        for path, size in zip(files, sizes, strict=True):
            src: Any = sys.stdin.buffer if path == "-" else path
            try:
                address = store.put(src, extension)
            except HashFSError as exc:
                failed = f"{path}: {exc}"
                break
            progress.advance(size)
            results.append(
                {
                    "file": path,
                    "id": address.id,
                    "relpath": address.relpath,
                    "duplicate": address.is_duplicate,
                }
            )
    finally:
        progress.close()
    for result in results:
        _emit(result, as_json, f"{result['id']}  {result['relpath']}")
    if failed is not None:
        _fail(failed)


def _readable_size(path: str) -> int:
    """Return the size of the regular file ``path``, or fail (exit 2) saying why not."""
    try:
        # Stat first: opening a FIFO would wait for a writer forever.
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            _fail(f"cannot read {path!r}: not a regular file")
        with open(path, "rb"):
            pass
    except OSError as exc:
        _fail(f"cannot read {path!r}: {exc.strerror or exc}")
    return info.st_size


@click.command()
@click.argument("ref")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write to this file instead of standard output.",
)
@click.pass_context
def get(ctx: click.Context, ref: str, output: str | None) -> None:
    """Write the bytes of REF (an id, relpath or path) to standard output or a file.

    A file given with ``-o`` is written only once REF is found; if writing it
    fails, the partial file is removed (exit 2).
    """
    store = _store(ctx)
    try:
        source = store.open(ref)
    except (NotFound, TypeError):
        _fail(f"no stored file for {ref!r}")
    with source:
        if output is None:
            shutil.copyfileobj(source, sys.stdout.buffer, CHUNK_SIZE)
            sys.stdout.buffer.flush()
            return
        _copy_to_file(source, output)


def _copy_to_file(source: Any, output: str) -> None:
    """Copy ``source`` into the file ``output``, or fail (exit 2) saying why.

    A file this call created is removed if writing it fails; one that existed
    (or a device such as ``/dev/stdout``) is left as it is.
    """
    created = False
    try:
        try:
            target = open(output, "xb")  # noqa: SIM115 - closed below
            created = True
        except FileExistsError:
            target = open(output, "wb")  # noqa: SIM115
    except OSError as exc:
        _fail(f"cannot write {output!r}: {exc.strerror or exc}")
    failure: OSError | None = None
    try:
        while chunk := source.read(CHUNK_SIZE):  # a read error is the store's: exit 3
            try:
                target.write(chunk)
            except OSError as exc:
                failure = exc
                break
    finally:
        try:
            target.close()
        except OSError as exc:
            failure = failure or exc
        if created and (failure is not None or sys.exc_info()[1] is not None):
            with contextlib.suppress(OSError):
                os.remove(output)
    if failure is not None:
        _fail(f"cannot write {output!r}: {failure.strerror or failure}")


@click.command()
@click.argument("refs", nargs=-1, required=True)
@_json
@click.pass_context
def rm(ctx: click.Context, refs: tuple[str, ...], as_json: bool) -> None:
    """Delete REFS; exit 2 if one names no stored file (the others are deleted)."""
    store = _store(ctx)
    missing = []
    for ref in refs:
        address = store.get(ref)
        if address is None:
            missing.append(ref)
            continue
        store.delete(address.relpath)
        _emit({"deleted": address.id, "relpath": address.relpath}, as_json, address.relpath)
    if missing:
        _fail("no stored file for " + ", ".join(map(repr, missing)))


@click.command(name="ls")
@click.option("--long", "-l", "long_", is_flag=True, help="Also size and id.")
@_json
@click.pass_context
def ls(ctx: click.Context, long_: bool, as_json: bool) -> None:
    """List stored files as they are found (nothing is collected in memory)."""
    store = _store(ctx)
    for relpath, size in _sizes(store):
        if not (long_ or as_json):
            click.echo(relpath)
            continue
        id = store.layout.unshard(relpath)
        _emit(
            {"relpath": relpath, "id": id, "size": size}, as_json, f"{size:>12}  {id}  {relpath}"
        )


@click.command()
@click.option("--top", default=5, show_default=True, help="How many of the largest files.")
@_json
@click.pass_context
def stats(ctx: click.Context, top: int, as_json: bool) -> None:
    """Count, total size, bytes by extension and the largest files.

    Resumable (tus) uploads not yet complete are counted apart: they are not
    stored files yet.
    """
    store = _store(ctx)
    try:
        partials = partial_store(store._engine).stats()
    except NotImplementedError:
        partials = PartialReport()
    count = total = 0
    by_extension: Counter[str] = Counter()
    files_by_extension: Counter[str] = Counter()
    largest: list[tuple[int, str]] = []
    for relpath, size in _sizes(store):
        count += 1
        total += size
        extension = store.layout.stored_extension(relpath) or "(none)"
        by_extension[extension] += size
        files_by_extension[extension] += 1
        largest = sorted([*largest, (size, relpath)], reverse=True)[:top]
    data = {
        "root": store.root,
        "count": count,
        "bytes": total,
        "by_extension": {
            ext: {"files": files_by_extension[ext], "bytes": size}
            for ext, size in by_extension.most_common()
        },
        "largest": [{"relpath": relpath, "bytes": size} for size, relpath in largest],
        "partial_uploads": {"count": len(partials.uploads), "bytes": partials.bytes},
    }
    lines = [f"root      {store.root}", f"files     {count}", f"bytes     {total}"]
    if partials.uploads:
        lines.append(
            f"resumable uploads in progress: {len(partials.uploads)} ({partials.bytes} bytes)"
        )
    lines += [
        f"  {ext:<10} {files_by_extension[ext]:>8} files {size:>14} bytes"
        for ext, size in by_extension.most_common()
    ]
    lines += ["largest"] + [f"  {size:>14}  {relpath}" for size, relpath in largest]
    _emit(data, as_json, "\n".join(lines))


@click.command()
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 64),
    default=os.cpu_count() or 1,
    show_default="cpu count",
    help="Files hashed at once.",
)
@_json
@_quiet
@click.pass_context
def verify(ctx: click.Context, jobs: int, as_json: bool, quiet: bool) -> None:
    """Re-hash every file; report those whose bytes no longer match; exit 1 if any."""
    store = _store(ctx)
    files = list(_sizes(store))
    progress = _Progress("verify", sum(size for _, size in files), quiet)
    bad = []

    def check(item: tuple[str, int]) -> tuple[str, int, str | None]:
        relpath, size = item
        try:
            actual = store._engine.hash_file(store.layout.abspath(relpath))
        except FileNotFoundError:
            return relpath, size, None
        return relpath, size, None if actual == store.layout.unshard(relpath) else actual

    try:
        with ThreadPoolExecutor(jobs) as pool:
            for relpath, size, actual in pool.map(check, files):
                progress.advance(size)
                if actual is not None:
                    bad.append({"relpath": relpath, "actual": actual})
    finally:
        progress.close()
    if as_json:
        click.echo(json.dumps({"checked": len(files), "mismatched": bad}))
    else:
        for item in bad:
            click.echo(f"MISMATCH  {item['relpath']}  (bytes hash to {item['actual']})")
        click.echo(f"{len(files)} files checked, {len(bad)} mismatched", err=True)
    if bad:
        ctx.exit(EXIT_PROBLEM_FOUND)


@click.command()
@click.option(
    "--relayout",
    is_flag=True,
    help="Also move files at another layout's content addresses (another store in this "
    "root, or this one before its depth, width or algorithm changed) into this one's.",
)
@_json
@_quiet
@click.pass_context
def repair(ctx: click.Context, relayout: bool, as_json: bool, quiet: bool) -> None:
    """Move misplaced files to their content address and report each move.

    Files left where they are are reported too, with the reason, and the exit
    status is then 1: files with more than one hard link, and, without
    --relayout, files at another layout's content addresses.
    """
    store = _store(ctx)
    report = store._engine.repair(foreign="move" if relayout else "refuse")
    for path, address in report:
        old = store.layout.inside(path) or path
        _emit(
            {"from": old, "to": address.relpath, "id": address.id},
            as_json,
            f"{old} -> {address.relpath}",
        )
    for path, reason in report.refused:
        old = store.layout.inside(path) or path
        _emit({"from": old, "left": reason}, as_json, f"LEFT  {old}  ({reason})")
    if not as_json:
        left = f", {len(report.refused)} left where they are" if report.refused else ""
        click.echo(f"{len(report)} files repaired{left}", err=True)
        if not relayout and any("another layout" in reason for _, reason in report.refused):
            click.echo(
                f"Files at another layout's addresses were left: this store is "
                f"{store.layout.describe()}. If that is right, another store shares the root; "
                "if its settings changed, run repair --relayout (or migrate) to move them.",
                err=True,
            )
    if report.refused:
        ctx.exit(EXIT_PROBLEM_FOUND)


@click.command()
@click.option(
    "--older-than",
    type=click.FloatRange(min=0),
    default=None,
    help="Only temp files and incomplete uploads older than this many seconds "
    "(used as given, 0 included; default 0 on a folder, whose live writers hold "
    "locks, and 3600 on S3).",
)
@_json
@click.pass_context
def gc(ctx: click.Context, older_than: float | None, as_json: bool) -> None:
    """Remove temp files and incomplete uploads left by killed writers, and empty folders."""
    report = _store(ctx).gc(older_than)
    data = {
        "temp_files": report.temp_files,
        "temp_bytes": report.temp_bytes,
        "folders": report.folders,
        "uploads": report.uploads,
        "partial_uploads": report.partial_uploads,
        "partial_bytes": report.partial_bytes,
    }
    uploads = f", aborted {len(report.uploads)} incomplete uploads" if report.uploads else ""
    if report.partial_uploads:
        uploads += (
            f", removed {len(report.partial_uploads)} expired resumable uploads "
            f"({report.partial_bytes} bytes)"
        )
    _emit(
        data,
        as_json,
        f"removed {len(report.temp_files)} temp files "
        f"({report.temp_bytes} bytes) and {len(report.folders)} empty folders{uploads}",
    )


@click.command()
@click.option("--depth", type=int, required=True)
@click.option("--width", type=int, required=True)
@click.option("--algorithm", default=None, help="New hash algorithm (default: unchanged).")
@_json
@_quiet
@click.pass_context
def migrate(
    ctx: click.Context, depth: int, width: int, algorithm: str | None, as_json: bool, quiet: bool
) -> None:
    """Re-lay the store out with a new depth/width/algorithm, in place.

    Every file is linked to its new address before its old name is removed,
    so at every moment each file has at least one name; an interrupted
    migration is finished by running it again. Update the app's HASHFS_*
    settings afterwards.
    """
    store = _store(ctx)
    try:
        target = Layout(store.root, depth, width, algorithm or store.algorithm)
    except ValueError as exc:
        _fail(str(exc))
    if store.layout.is_url:
        _fail("migrate works on local stores only")
    same_hash = target.algorithm == store.algorithm
    files = [(store.layout.abspath(relpath), size) for relpath, size in _sizes(store)]
    progress = _Progress("migrate", sum(size for _, size in files), quiet)
    moved = 0
    try:
        for path, size in files:
            relpath = os.path.relpath(path, store.root)
            # A valid address names the same id under any depth and width.
            parsed = store.layout.parse_address(relpath) or target.parse_address(relpath)
            if parsed is not None and same_hash:
                id, extension = parsed
            else:
                id = _hash(path, target.algorithm)
                extension = store.layout.stored_extension(relpath)
            new_relpath = target.relpath(id, extension)
            if new_relpath == relpath:
                progress.advance(size)
                continue  # already at its new address: never unlink its only name
            store._engine.move(relpath, new_relpath)
            moved += 1
            progress.advance(size)
    finally:
        progress.close()
    store._engine.gc()
    data = {
        "moved": moved,
        "files": len(files),
        "depth": depth,
        "width": width,
        "algorithm": target.algorithm,
    }
    _emit(
        data,
        as_json,
        f"{moved} of {len(files)} files moved; now set HASHFS_DEPTH={depth}, "
        f"HASHFS_WIDTH={width}, HASHFS_ALGORITHM={target.algorithm!r}",
    )


def _hash(path: str, algorithm: str) -> str:
    import hashlib

    digest = hashlib.new(algorithm)
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


@click.command()
@click.option(
    "--keep",
    "keep_file",
    type=click.File("rb"),
    required=True,
    metavar="FILE|-",
    help="The ids to keep, one per line (HashAddress.id, no extension); - reads standard input.",
)
@click.option(
    "--older-than",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="Leave files modified more recently than this: uploads the app may not have "
    "recorded yet (90s, 15m, 2h, 7d; a bare number is seconds).",
)
@click.option("--dry-run", is_flag=True, help="Remove nothing; report what would go.")
@click.option(
    "--allow-empty",
    is_flag=True,
    help="Sweep even when --keep holds no id (every stored file older than --older-than goes).",
)
@_json
@click.pass_context
def sweep(
    ctx: click.Context,
    keep_file: IO[bytes],
    older_than: str,
    dry_run: bool,
    allow_empty: bool,
    as_json: bool,
) -> None:
    """Remove stored files whose id is not in --keep and older than --older-than.

    Prints the relpath of each file removed (with --dry-run, that would be),
    then a summary on standard error. The ids are read before anything is
    removed: a line that is not an id of this store stops the command (exit
    2) naming the line. Files not at a content address are never touched.
    An empty --keep stops the command too (a query piped in that failed
    before its first line looks just like that), unless --allow-empty.
    """
    try:
        grace = parse_duration(older_than)
    except ValueError as exc:
        _fail(f"--older-than: {exc}")
    store = _store(ctx)
    name = getattr(keep_file, "name", "-")
    source = "standard input" if name in ("-", "<stdin>") else repr(name)

    try:
        first = keep_file.readline()
    except OSError as exc:
        _fail(f"--keep {source}: cannot read: {exc.strerror or exc}")
    if not first and not allow_empty:
        _fail(
            f"--keep {source} holds no id, so every stored file older than {older_than} would "
            "go; if that is meant, pass --allow-empty (if the ids come from a command, check "
            "that it succeeded)"
        )

    def ids() -> Iterator[str]:
        for line in itertools.chain((first,) if first else (), keep_file):
            yield line.decode("utf-8", "replace").rstrip("\r\n")

    def removed(address: Any) -> None:
        _emit({"removed": address.relpath, "id": address.id}, as_json, address.relpath)

    try:
        report = store.sweep(ids(), grace, dry_run=dry_run, on_remove=removed)
    except InvalidId as exc:
        _fail(
            f"--keep {source}, line {exc.index + 1}: {exc.id!r} is not an id of this store "
            f"(a {store.layout.digest_length}-character lowercase hex {store.algorithm} "
            "digest, without extension)"
        )
    except SweepRunning as exc:
        raise StoreBusy(str(exc)) from exc
    except OSError as exc:
        if exc.errno == errno.EPIPE or keep_file.closed or _storage_problem(exc) is not None:
            raise  # the reader left, or the bucket cannot be used: not the --keep file's
        _fail(f"--keep {source}: cannot read: {exc.strerror or exc}")
    if as_json:
        click.echo(json.dumps({"summary": asdict(report)}))
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{verb} {report.removed} files ({report.removed_bytes} bytes) and "
        f"{report.folders} emptied folders; left {report.kept} kept, {report.young} "
        f"modified in the last {older_than}, {report.skipped} not at a content address",
        err=True,
    )


_COMMANDS = [put, get, rm, ls, stats, verify, repair, gc, sweep, migrate]


def app_group(settings: Any) -> click.Group:
    """The ``hashfs`` group for an app, on its configured store (a ``Settings``)."""

    def build(create: bool = False) -> SyncHashFS:
        # init_app created the root; a store the app cannot open is its config's problem.
        return SyncHashFS(settings.root_folder, **settings.store_options())

    return make_group("hashfs", build)


#: The standalone console script ``async-hashfs``.
cli = make_group("async-hashfs")
