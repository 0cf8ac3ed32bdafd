"""Makes the signed-in user the actor of governed writes made while a request is handled."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from audit.governed import request_actor


class ActorMiddleware:
    """Stores the request; `request.user` is read only when a write happens.

    Reading it late matters: DRF authenticates tokens inside the view and then sets the user
    on the underlying HttpRequest, so token-authenticated writes get their account too.
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
