"""Who is acting: an explicit actor for a block of code, else the signed-in user of the request.

Every write that records an actor (the ledger's governed models, services) asks `current_actor()`;
writes are never anonymous. `ActorMiddleware` stores the request, `acting_as` names an actor
explicitly (a user, or `system:<task>` for jobs).
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from core.errors import InvalidInput

_actor: contextvars.ContextVar[Any] = contextvars.ContextVar("ledger_actor", default=None)
_request: contextvars.ContextVar[Any] = contextvars.ContextVar("ledger_request", default=None)


@contextmanager
def acting_as(actor: Any) -> Iterator[None]:
    """Captured writes inside this block are recorded as done by `actor` (a user or `system:<name>`)."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


@contextmanager
def request_actor(request: Any) -> Iterator[None]:
    """Used by ActorMiddleware: the request whose `user` acts, resolved when a write happens."""
    token = _request.set(request)
    try:
        yield
    finally:
        _request.reset(token)


def current_actor() -> Any:
    """The explicit actor, else the authenticated request user; refuses anonymous writes."""
    actor = _actor.get()
    if actor is None:
        request = _request.get()
        user = getattr(request, "user", None) if request is not None else None
        if user is not None and getattr(user, "is_authenticated", False):
            actor = user
    if actor is None or actor == "":
        raise InvalidInput("Changes to governed records need an actor (a signed-in user or a named system task).",
                           code="ledger_actor_missing")
    return actor


class ActorMiddleware:
    """Makes the signed-in user the actor of writes made while a request is handled.

    Stores the request; `request.user` is read only when a write happens. Reading it late
    matters: DRF authenticates tokens inside the view and then sets the user on the underlying
    HttpRequest, so token-authenticated writes get their account too.
    Place it after AuthenticationMiddleware.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(self.get_response):
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if iscoroutinefunction(self):
            return self.__acall__(request)
        with request_actor(request):
            return self.get_response(request)

    async def __acall__(self, request: Any) -> Any:
        with request_actor(request):
            response: Awaitable[Any] = self.get_response(request)
            return await response


# --- How an actor is shown: look-alike names never look alike --------------------------------------

def visible(text: str) -> str:
    """`text` with every character outside printable ASCII as a Python escape (`user:\\u0430lice`).

    Ledger pages show actors this way, so `аlice` (Cyrillic а) and `alice` never look the same.
    Printable ASCII has no backslash-u in any actor (usernames cannot hold a backslash), so the
    escaped form reads back unambiguously with `from_visible`.
    """
    return "".join(char if " " <= char <= "~" else char.encode("unicode_escape").decode("ascii") for char in text)


def from_visible(text: str) -> str:
    """The raw text of an escaped actor typed into a filter (`user:\\u0430lice` → `user:аlice`)."""
    if "\\" not in text:
        return text
    try:
        return text.encode("ascii").decode("unicode_escape")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text
