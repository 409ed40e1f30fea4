"""The dashboard's session and CSRF rules (docs/operations.md, "The dashboard").

- The session is the operator token itself, kept in a cookie the page's scripts cannot read
  (``HttpOnly``), sent only to ``/ui`` (``Path=/ui``), only over a secure context (``Secure``;
  browsers treat ``http://127.0.0.1`` and ``http://localhost`` as one) and never on a request
  started by another site (``SameSite=Strict``). The token never appears in a URL, a page or a log.
- Every state-changing request (login included) carries a CSRF token in its form body:
  ``HMAC-SHA256(operator token, purpose ":" nonce)``, where the nonce is a random value of a
  second cookie. A page of another origin can neither read the nonce nor compute the HMAC
  without the operator token; cookies are shared between the ports of one host, so a site on
  another local port could plant a nonce, but still not forge its HMAC. A request whose
  ``Origin`` header names another origin is refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

#: The cookie holding the operator token (the session).
SESSION_COOKIE = "papi_ui_session"
#: The cookie holding the CSRF nonce.
NONCE_COOKIE = "papi_ui_nonce"
#: The form field carrying the CSRF token.
CSRF_FIELD = "csrf_token"
#: The path both cookies are scoped to.
COOKIE_PATH = "/ui"
#: Seconds a dashboard session lasts before the operator logs in again.
SESSION_MAX_AGE_S = 12 * 3600
#: Largest form body the dashboard reads (bytes).
MAX_FORM_BYTES = 16 * 1024
#: Most fields one form may carry.
MAX_FORM_FIELDS = 16
#: Longest value of the nonce cookie the server accepts (characters).
MAX_NONCE_CHARS = 64

LOGIN = "login"
SESSION = "session"


class FormError(ValueError):
    """A form body the dashboard refuses (too large, not UTF-8, repeated or too many fields)."""


def new_nonce() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(admin_token: str, purpose: str, nonce: str) -> str:
    """The CSRF token of ``nonce`` for ``purpose`` (``login`` or ``session``), hex."""
    message = f"papi-sandbox-ui:{purpose}:{nonce}".encode()
    return hmac.new(admin_token.encode(), message, hashlib.sha256).hexdigest()


def request_nonce(request: Request) -> str | None:
    nonce = request.cookies.get(NONCE_COOKIE)
    if nonce and len(nonce) <= MAX_NONCE_CHARS and nonce.isascii():
        return nonce
    return None


def logged_in(request: Request, admin_token: str) -> bool:
    """True when the session cookie holds the operator token (constant-time comparison)."""
    given = request.cookies.get(SESSION_COOKIE)
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), admin_token.encode())


#: Hosts a browser treats as a secure context over plain HTTP (Secure cookies are kept).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def cookie_dropped(request: Request) -> bool:
    """True when the browser will not keep the Secure session cookie: plain HTTP to a host that
    is not loopback (then the dashboard needs HTTPS in front, or an SSH tunnel to loopback)."""
    return request.url.scheme == "http" and (request.url.hostname or "") not in LOOPBACK_HOSTS


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin (``Origin`` header,
    or ``Sec-Fetch-Site: cross-site``/``same-site``, which includes another port of this host)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def csrf_ok(request: Request, form: dict[str, str], admin_token: str, purpose: str) -> bool:
    """The CSRF check of one state-changing request: same origin, and the form's token is the
    HMAC of the nonce cookie for ``purpose``."""
    nonce = request_nonce(request)
    given = form.get(CSRF_FIELD, "")
    if nonce is None or not given or not same_origin(request):
        return False
    expected = csrf_token(admin_token, purpose, nonce)
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def parse_form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict; raises FormError for a body
    that is not UTF-8, repeats a field or has more than MAX_FORM_FIELDS fields."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise FormError("the form is not valid UTF-8 or has too many fields") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise FormError(f"the form repeats the field {name[:32]!r}")
        form[name] = value
    return form


def set_cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
    """One dashboard cookie: HttpOnly, Secure, SameSite=Strict, Path=/ui."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=True,
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, secure=True, httponly=True, samesite="strict")
