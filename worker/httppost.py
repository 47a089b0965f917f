"""The ``post`` step's HTTP requests, for both engines: one aiohttp session per engine.

A session (:mod:`wsload.worker.session`) asks for a request as an effect
(:class:`wsload.worker.session_client.HttpRequest`); the engine hands it
here and feeds the answer back with ``Session.on_http(now, status, error,
text)``. Every request is a task this object owns (no fire-and-forget):
:meth:`HttpPoster.aclose` cancels what is still out when the run ends.
At most ``limit`` requests are out at once (the others wait their turn,
their wait inside the step's timeout); the body read is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable

import aiohttp
import yarl

from wsload.common.validation import REDACTED, display_url
from wsload.worker.connect import classify
from wsload.worker.session_client import HttpRequest

#: requests out at once per engine
MAX_CONCURRENT = 64
#: bytes of an answer's body read (the rest is dropped with the connection)
MAX_BODY = 64 * 1024

#: (status, error kind or None, error text)
Answer = tuple[int, str | None, str]


class HttpPoster:
    """Performs ``post`` steps' requests for one engine."""

    def __init__(self, limit: int = MAX_CONCURRENT, ssl_context: ssl.SSLContext | None = None):
        self._limit = asyncio.Semaphore(limit)
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def submit(self, request: HttpRequest, done: Callable[[Answer], None]) -> None:
        """Perform ``request`` in a task of ours; ``done`` gets the answer (never if cancelled)."""
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._submitted(request, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _submitted(self, request: HttpRequest, done: Callable[[Answer], None]) -> None:
        done(await self.perform(request))

    async def perform(self, request: HttpRequest) -> Answer:
        """The answer to ``request`` within its timeout: (status, None, "") or a failure's kind."""
        url = request.url
        status, kind, text = await self._perform(request)
        return status, kind, _redacted(text, url) if text else text

    async def _perform(self, request: HttpRequest) -> Answer:
        url = request.url
        shown = display_url(url)  # an error text never shows the URL's user:password
        try:
            async with asyncio.timeout(request.timeout):
                async with self._limit:
                    session = self._session
                    if session is None:
                        session = self._session = aiohttp.ClientSession(
                            connector=aiohttp.TCPConnector(ssl=self._ssl or True)
                        )
                    headers = {"Content-Type": request.content_type} if request.body else None
                    async with session.request(
                        request.method, url, data=request.body, headers=headers
                    ) as response:
                        await response.content.read(MAX_BODY)
                        return response.status, None, ""
        except TimeoutError:
            return 0, "timeout", f"{shown}: no HTTP answer within {request.timeout:g} s"
        except aiohttp.InvalidURL:
            return 0, "bad_url", f"{shown}: not a valid URL"
        except aiohttp.ClientConnectorError as exc:
            failed = classify(exc.os_error, shown)
            return 0, failed.kind, str(failed)
        except OSError as exc:
            failed = classify(exc, shown)
            return 0, failed.kind, str(failed)
        except (aiohttp.ClientError, ValueError) as exc:  # a disconnect, a bad answer...
            return 0, "http_error", f"{shown}: {type(exc).__name__}: {exc}"

    async def aclose(self) -> None:
        """Cancel every request still out and close the HTTP session."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None


def _redacted(text: str, url: str) -> str:
    """``text`` with ``url``'s credentials shown as ``***``, however an exception spelled
    the URL (as given, or as aiohttp's yarl rewrote it: an error names its own URL)."""
    if display_url(url) == url:
        return text
    spellings = {url}
    with contextlib.suppress(ValueError, TypeError):
        spellings.add(str(yarl.URL(url)))
    for spelling in spellings:
        text = text.replace(spelling, display_url(spelling))
        authority = spelling.partition("://")[2].split("/", 1)[0]
        userinfo = authority.rpartition("@")[0]
        if userinfo:  # the URL cut or re-spelled elsewhere: its user:password@ still goes
            text = text.replace(userinfo + "@", REDACTED + "@")
    return text


__all__ = ["MAX_BODY", "MAX_CONCURRENT", "Answer", "HttpPoster"]
