"""The guard against cross-site requests (CSRF): a request that Airflow takes for the session's
(its cookie) must come from this site and carry the session's form token."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, status
from fastapi.security.utils import get_authorization_scheme_param

SESSION_COOKIE = "_token"  # Airflow's UI session (a JWT); API clients send `Authorization: Bearer` instead


class CrossSiteGuard:
    """Refuses state-changing requests a browser was made to send from another site (CSRF).

    Airflow's session cookie rides along with any request a browser sends to this site, whichever
    page made it; so a request that carries it must name this site as its Origin (or Referer) and
    echo the session's form token, which only a page of this site can read. A request with a
    bearer token carries no ambient credentials, so API clients need neither.
    """

    def __init__(self, secret: bytes, origins: Sequence[str]) -> None:
        self._secret = secret
        self._hosts = {urlsplit(o).netloc for o in origins if o}

    def _mac(self, *parts: str) -> str:
        return hmac.new(self._secret, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()[:32]

    def token(self, request: Request) -> str:
        cookie = request.cookies.get(SESSION_COOKIE)
        return self._mac("form", cookie) if cookie else ""

    def _by_cookie(self, request: Request) -> bool:
        """Whether Airflow takes the request's identity from the session cookie: it has one, and no
        non-empty `Bearer` credential (Airflow's `get_user`). Any other Authorization header (`Basic`,
        `Negotiate` or `NTLM` added by a proxy, an empty `Bearer`) leaves the cookie in charge."""
        if SESSION_COOKIE not in request.cookies:
            return False
        scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
        return not (scheme.lower() == "bearer" and credentials.strip())

    def check_origin(self, request: Request) -> None:
        if not self._by_cookie(request):
            return
        sent_from = request.headers.get("origin") or request.headers.get("referer") or ""
        if urlsplit(sent_from).netloc not in {request.headers.get("host", ""), *self._hosts}:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "Refused: this request was sent from another site"
                f" ({sent_from or 'no Origin'}). Use the Imports page itself.",
            )

    def check_token(self, request: Request, sent: object) -> None:
        if self._by_cookie(request) and not hmac.compare_digest(str(sent or ""), self.token(request)):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "Refused: the form is missing its token or is from an"
                " earlier session. Reload the Imports page and send it again.",
            )

    def sign(self, uploaded: str, airflow_run: str | None) -> str:
        return self._mac("notice", uploaded, airflow_run or "")

    def signed(self, uploaded: str | None, airflow_run: str | None, sig: str | None) -> bool:
        if not uploaded or not sig:
            return False
        return hmac.compare_digest(sig, self.sign(uploaded, airflow_run))
