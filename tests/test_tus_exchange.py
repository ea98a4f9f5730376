"""``TusExchange``: one request to the tus endpoint as steps, driven here by hand (no framework).

Both extensions carry out these steps, so the order they come in is the
endpoint's behaviour on Quart and Flask alike: the completion hook before
``hook_done``, a cut-short transfer keeping its bytes before a cancellation
goes on, the framework's own HTTP errors raised again.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from werkzeug.datastructures import Headers

from async_hashfs import SyncHashFS
from async_hashfs._tus import (
    RELPATH_HEADER,
    URL_HEADER,
    Blocking,
    CallHook,
    CompletedUpload,
    FeedBody,
    TusExchange,
    TusProtocol,
    TusResponse,
    TusStep,
)
from async_hashfs._tus_store import partial_store

DATA = b"hello, tus"
NAME = base64.b64encode("résumé 日本語 😀.txt".encode()).decode()


class Refused(Exception):
    """Stands for the framework's HTTP error (an ``abort(401)``)."""


class Cancelled(BaseException):
    """Stands for a cancellation (the client went away)."""


def protocol(root: Path) -> TusProtocol:
    return TusProtocol(partial_store(SyncHashFS(root)._engine), None, None)


def request(method: str, upload_id: str | None = None, **headers: str) -> SimpleNamespace:
    sent = Headers({"Tus-Resumable": "1.0.0", **headers})
    length = sent.get("Content-Length", type=int)
    return SimpleNamespace(
        method=method, headers=sent, content_length=length, script_root="", upload_id=upload_id
    )


def post_with_body(data: bytes = DATA) -> SimpleNamespace:
    return request(
        "POST",
        **{
            "Upload-Length": str(len(data)),
            "Upload-Metadata": f"filename {NAME}",
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(len(data)),
        },
    )


def exchange(
    tus: TusProtocol,
    req: SimpleNamespace,
    authorize: Callable[[str, str | None], Any] | None = None,
    on_complete: Callable[[CompletedUpload], Any] | None = None,
) -> TusExchange:
    return TusExchange(
        tus,
        req,
        req.upload_id,
        "/tus",
        lambda relpath: f"https://cdn.example/{relpath}",
        authorize=authorize,
        on_complete=on_complete,
        passthrough=(Refused,),
    )


def drive(
    ex: TusExchange, body: bytes = DATA, trace: list[str] | None = None
) -> tuple[TusResponse, list[TusStep]]:
    """Carry out every step as the Flask extension does; return the response and the steps."""
    steps: list[TusStep] = []
    step = ex.first()
    while not isinstance(step, TusResponse):
        steps.append(step)
        try:
            if isinstance(step, Blocking):
                if trace is not None:
                    trace.append(step.func.__name__)
                result = step.func(*step.args)
            elif isinstance(step, FeedBody):
                result = step.transfer.write((body,))
            else:
                result = step.hook(*step.args)
        except BaseException as exc:
            step = ex.throw(exc)
        else:
            step = ex.send(result)
    return step, steps


def test_an_upload_in_one_post_runs_the_hook_then_records_it(tmp_path: Path) -> None:
    tus = protocol(tmp_path)
    trace: list[str] = []
    completed: list[CompletedUpload] = []

    def on_complete(upload: CompletedUpload) -> None:
        trace.append("hook")
        completed.append(upload)

    response, steps = drive(exchange(tus, post_with_body(), on_complete=on_complete), trace=trace)
    assert response.status == 201
    relpath = response.headers[RELPATH_HEADER]
    assert response.headers[URL_HEADER] == f"https://cdn.example/{relpath}"
    assert [type(step) for step in steps] == [Blocking, FeedBody, Blocking, CallHook, Blocking]
    assert trace == ["start", "complete", "hook", "hook_done"]
    assert [step.shielded for step in steps if isinstance(step, Blocking)] == [
        False,
        True,
        False,
    ]
    assert completed[0].filename == "résumé 日本語 😀.txt"
    info = tus.partials.info(completed[0].upload_id)
    assert info.address is not None and not info.hook_pending
    assert (tmp_path / relpath).read_bytes() == DATA


def test_a_failing_hook_is_500_and_its_upload_is_not_recorded(tmp_path: Path) -> None:
    tus = protocol(tmp_path)
    trace: list[str] = []
    seen: list[str] = []

    def on_complete(upload: CompletedUpload) -> None:
        seen.append(upload.upload_id)
        raise Refused("not even an HTTP error is the hook's answer")

    response, _ = drive(exchange(tus, post_with_body(), on_complete=on_complete), trace=trace)
    assert response.status == 500
    assert "completion hook failed (Refused)" in response.body
    assert "hook_done" not in trace
    assert tus.partials.info(seen[0]).hook_pending


def test_without_a_hook_the_upload_is_recorded_at_once(tmp_path: Path) -> None:
    tus = protocol(tmp_path)
    trace: list[str] = []
    response, steps = drive(exchange(tus, post_with_body()), trace=trace)
    assert response.status == 201
    assert not any(isinstance(step, CallHook) for step in steps)
    assert trace == ["start", "complete", "hook_done"]


@pytest.mark.parametrize(
    ("answer", "status"),
    [(True, 201), (False, 403), (None, 403), ("yes", 403)],
)
def test_the_authorize_hook_answers_before_anything_is_done(
    tmp_path: Path, answer: object, status: int
) -> None:
    asked: list[tuple[str, str | None]] = []

    def authorize(action: str, upload_id: str | None) -> object:
        asked.append((action, upload_id))
        return answer

    response, steps = drive(exchange(protocol(tmp_path), post_with_body(), authorize))
    assert asked == [("create", None)]
    assert response.status == status
    assert response.headers["Tus-Resumable"] == "1.0.0"
    if status == 403:
        assert steps == [CallHook(authorize, ("create", None))]


def test_a_framework_error_from_a_hook_is_raised_again_any_other_is_500(
    tmp_path: Path,
) -> None:
    def framework_error(action: str, upload_id: str | None) -> bool:
        raise Refused("401")

    def bug(action: str, upload_id: str | None) -> bool:
        raise KeyError("session")

    with pytest.raises(Refused):
        drive(exchange(protocol(tmp_path), post_with_body(), framework_error))
    response, _ = drive(exchange(protocol(tmp_path), post_with_body(), bug))
    assert response.status == 500
    assert response.body == "internal error (KeyError)\n"


def test_a_refused_call_is_its_tus_error(tmp_path: Path) -> None:
    response, steps = drive(exchange(protocol(tmp_path), request("PUT")))
    assert (response.status, steps) == (405, [])
    assert response.headers["Allow"] == "OPTIONS, POST"


def test_a_transfer_cancelled_keeps_what_arrived_then_the_cancellation_goes_on(
    tmp_path: Path,
) -> None:
    tus = protocol(tmp_path)
    created, _ = drive(exchange(tus, request("POST", **{"Upload-Length": "100"})))
    upload_id = created.headers["Location"].rsplit("/", 1)[1]
    patch = request(
        "PATCH",
        upload_id,
        **{
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": "100",
        },
    )
    ex = exchange(tus, patch)
    start = ex.first()
    assert isinstance(start, Blocking)
    feed = ex.send(start.func(*start.args))
    assert isinstance(feed, FeedBody)
    feed.transfer.write((b"x" * 40,))
    cancelled = Cancelled()
    cut_off = ex.throw(cancelled)
    assert isinstance(cut_off, Blocking) and cut_off.shielded
    assert cut_off.func == tus.cut_off
    result = cut_off.func(*cut_off.args)
    with pytest.raises(Cancelled) as raised:
        ex.send(result)
    assert raised.value is cancelled
    assert tus.partials.info(upload_id).offset == 40
