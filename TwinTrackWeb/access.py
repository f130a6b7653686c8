"""Who may use the review: the access token, checked on every HTTP request.

The token travels once in the URL printed at start (``index.html?secret=T``,
like Jupyter's ``?token=``). That request sets a cookie holding the token,
named after this server's token, HttpOnly and SameSite=Strict; every later
request (the page's assets and the websocket upgrade) must carry one of the
two, or is refused with 403 before it reaches trame. The same token is also
wslink's websocket secret, so a client that passes the HTTP check still has
to present it in its first websocket message.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

QUERY_PARAMETER = "secret"  # the name trame's client reads its websocket secret from
REFUSAL = ("403: this TwinTrack review needs its access token. Open the URL that `twintrack review` "
           "printed when it started (it ends with ?secret=...).")


def cookie_name(token: str) -> str:
    # Cookies are per host, not per port: two reviews on one machine must not share one name.
    return "twintrack_review_" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


def _matches(candidate: str, token: str) -> bool:
    return hmac.compare_digest(candidate.encode("utf-8", "surrogateescape"), token.encode("utf-8"))


def token_middleware(token: str):
    """An aiohttp middleware that refuses every request without ``token``."""
    name = cookie_name(token)

    @web.middleware
    async def require_token(request: web.Request, handler):
        if _matches(request.query.get(QUERY_PARAMETER, ""), token):
            response = await handler(request)
            response.set_cookie(name, token, httponly=True, samesite="Strict", path="/")
            return response
        if _matches(request.cookies.get(name, ""), token):
            return await handler(request)
        raise web.HTTPForbidden(text=REFUSAL)

    return require_token


def protect(wslink_server, token: str) -> None:
    """Put the token check in front of every route of trame's aiohttp server."""
    wslink_server.app.middlewares.append(token_middleware(token))
