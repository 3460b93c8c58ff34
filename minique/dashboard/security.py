"""Authentication, CSRF protection and the bind check.

* No credentials configured: every request is let in. That is only allowed while the server
  binds to a loopback address (``check_bind`` refuses anything else).
* A token (``MINIQUE_DASHBOARD_TOKEN``): ``Authorization: Bearer <token>``; a browser signs in
  once with a form that POSTs the token to ``/_signin`` and gets an HttpOnly cookie instead.
  The token never travels in a URL (URLs end up in access logs, proxies and browser history);
  ``?token=`` is not accepted, and ``RedactCredentials`` masks it in log lines all the same.
* Basic auth (``MINIQUE_DASHBOARD_USERNAME`` and ``MINIQUE_DASHBOARD_PASSWORD``).

Mutating requests (POST, PUT, PATCH, DELETE) must carry the ``X-CSRF-Token`` header equal to
the ``minique_csrf`` cookie (double submit), and a foreign ``Origin`` (or, without one, a
foreign ``Referer``) or a cross-site or same-site ``Sec-Fetch-Site`` is refused. Requests
that authenticate with a Bearer header need no token (a browser never adds that header by
itself), but the origin checks apply to them too.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import json
import logging
import os
import re
import secrets
from base64 import b64decode
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

if TYPE_CHECKING:  # this module is imported by the CLI, which must not need starlette
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_COOKIE = "minique_csrf"
CSRF_HEADER = "x-csrf-token"
AUTH_COOKIE = "minique_auth"
SECURITY_HEADERS = [(b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin")]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ENV_TOKEN = "MINIQUE_DASHBOARD_TOKEN"
ENV_USERNAME = "MINIQUE_DASHBOARD_USERNAME"
ENV_PASSWORD = "MINIQUE_DASHBOARD_PASSWORD"
SIGNIN_PATH = "/_signin"
MAX_SIGNIN_BODY = 4096
_CREDENTIAL_PARAM = re.compile(
    r"(?i)([?&;](?:token|access_token|auth|password|passwd|secret|api_key|apikey)=)[^&;#\s\"']*")


def redact(text: str) -> str:
    """``text`` with the values of credential-like query parameters replaced by ``***``."""
    return _CREDENTIAL_PARAM.sub(r"\1***", text)


class RedactCredentials(logging.Filter):
    """A logging filter that masks credential query parameters (``?token=...``) in every
    record it sees, message and arguments alike; install it on uvicorn's loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


class ConfigError(Exception):
    """The dashboard's configuration is unsafe or incomplete (e.g. public bind, no auth)."""


@dataclass(frozen=True)
class Auth:
    """Credentials the dashboard asks for: a bearer ``token``, or ``username``+``password``."""

    token: str | None = None
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < 16:
            raise ConfigError("the dashboard token must be at least 16 characters")
        if (self.username is None) != (self.password is None):
            raise ConfigError("basic auth needs both a username and a password")
        if self.password is not None and not self.password:
            raise ConfigError("the basic-auth password must not be empty")
        if self.token is None and self.username is None:
            raise ConfigError("Auth needs a token or a username and password")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Auth | None:
        """Reads the ``MINIQUE_DASHBOARD_*`` variables; None when none is set."""
        env = os.environ if env is None else env
        token = env.get(ENV_TOKEN) or None
        username = env.get(ENV_USERNAME) or None
        password = env.get(ENV_PASSWORD) or None
        if token is None and username is None and password is None:
            return None
        return cls(token=token, username=username, password=password)

    def cookie_value(self) -> str:
        """What the auth cookie holds: a digest of the token, never the token itself."""
        return hashlib.sha256(b"minique-dashboard:" + (self.token or "").encode()).hexdigest()


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth: Auth | None) -> None:
    """Refuses to serve on a non-loopback address without credentials."""
    if auth is None and not is_loopback(host):
        raise ConfigError(
            f"refusing to bind the dashboard to {host} without authentication: set "
            f"{ENV_TOKEN}, or {ENV_USERNAME} and {ENV_PASSWORD} (or bind to 127.0.0.1)")


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _cookies(headers: Mapping[str, str]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:
        return {}
    return {k: m.value for k, m in jar.items()}


class SecurityMiddleware:
    """Pure ASGI middleware: records the mount path, checks auth and CSRF, sets the cookies."""

    def __init__(self, app: ASGIApp, auth: Auth | None, exempt_prefixes: tuple[str, ...] = ("/static/",),
                 trusted_origins: tuple[str, ...] = ()):
        self.app = app
        self.auth = auth
        self.exempt = exempt_prefixes
        self.trusted = frozenset(o.rstrip("/").lower() for o in trusted_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        base = scope.get("root_path", "").rstrip("/")
        scope["minique.base"] = base
        path = scope["path"]
        local = path[len(base):] if base and path.startswith(base) else path
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cookies = _cookies(headers)
        method = scope["method"].upper()
        api = local.startswith("/api/") or local == "/metrics"
        new_cookies: list[str] = []
        cookie_path = base or "/"
        secure = "; Secure" if scope.get("scheme") == "https" else ""

        if self.auth is not None and not local.startswith(self.exempt):
            if local == SIGNIN_PATH and method == "POST" and self.auth.token is not None:
                await self._sign_in(scope, receive, send, headers, base, cookie_path, secure)
                return
            verdict = self._authenticate(headers, cookies)
            if verdict is None:
                await self._unauthorized(send, api)
                return
            scope["minique.auth"] = verdict
        else:
            scope["minique.auth"] = "none"

        csrf = cookies.get(CSRF_COOKIE, "")
        if method not in SAFE_METHODS:
            problem = self._csrf_problem(headers, csrf, scope.get("minique.auth") == "bearer",
                                         self.trusted)
            if problem:
                await self._send(send, 403, json.dumps(
                    {"error": {"code": "csrf", "message": problem}}).encode(), "application/json")
                return
        if not csrf or len(csrf) < 32:
            csrf = secrets.token_urlsafe(32)
            new_cookies.append(f"{CSRF_COOKIE}={csrf}; Path={cookie_path}; SameSite=Strict{secure}")
        scope["minique.csrf"] = csrf

        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"set-cookie", c.encode("latin-1")) for c in new_cookies]
                message = {**message, "headers": [*message.get("headers", []), *extra, *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_cookies)

    def _authenticate(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> str | None:
        auth = self.auth
        assert auth is not None
        header = headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if auth.token is not None:
            if scheme == "bearer" and _eq(value.strip(), auth.token):
                return "bearer"
            if AUTH_COOKIE in cookies and _eq(cookies[AUTH_COOKIE], auth.cookie_value()):
                return "cookie"
        if auth.username is not None and auth.password is not None and scheme == "basic":
            try:
                user, _, password = b64decode(value.strip(), validate=True).decode().partition(":")
            except Exception:
                return None
            # Both compared, always, so the timing says nothing about which one was wrong.
            ok_user = _eq(user, auth.username)
            ok_password = _eq(password, auth.password)
            if ok_user and ok_password:
                return "basic"
        return None

    @staticmethod
    def _csrf_problem(headers: Mapping[str, str], cookie: str, bearer: bool,
                      trusted: frozenset[str] = frozenset()) -> str | None:
        """Why a mutating request is refused, or None. The request must come from the
        dashboard's own origin: by ``Origin`` (or, when a client sends none, by ``Referer``
        if it sends one), and by ``Sec-Fetch-Site`` when the browser sends it; and, unless
        it authenticates with a Bearer header, it must carry the CSRF token. A request
        without Origin and Referer is let through only with that token: a browser sends a
        custom header cross-origin only after a CORS preflight, which this app never
        grants, so such a request comes from the dashboard's own page or from a client
        that is not a browser (and holds no victim's cookie)."""
        origin = headers.get("origin")
        referer = headers.get("referer")
        source = origin if origin is not None else referer
        if source == "null":
            return "requests from an opaque origin are refused"
        if source:
            parts = urlsplit(source)
            claimed = f"{parts.scheme}://{parts.netloc}".lower()
            same_host = parts.netloc.lower() == headers.get("host", "").lower()
            if not same_host and claimed not in trusted:
                what = "cross-origin request" if origin is not None else "request referred"
                return f"{what} from {claimed} refused"
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site == "cross-site":
            return "cross-site request refused"
        if fetch_site == "same-site" and (not origin or origin.rstrip("/").lower() not in trusted):
            # Another port or subdomain of the same site: not the dashboard's own page.
            return "same-site request from another origin refused"
        if bearer:
            return None
        sent = headers.get(CSRF_HEADER, "")
        if not cookie or not sent or not _eq(sent, cookie):
            return (f"missing or wrong {CSRF_HEADER} header: send the value of the {CSRF_COOKIE} "
                    "cookie (GET /api/csrf sets it and returns it)")
        return None

    async def _sign_in(self, scope: Scope, receive: Receive, send: Send, headers: Mapping[str, str],
                       base: str, cookie_path: str, secure: str) -> None:
        """The sign-in form's POST: the token in the body, never in the URL."""
        assert self.auth is not None and self.auth.token is not None
        body = b""
        more = True
        while more and len(body) <= MAX_SIGNIN_BODY:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        problem = self._csrf_problem(headers, "", bearer=True, trusted=self.trusted)
        form = dict(parse_qsl(body[:MAX_SIGNIN_BODY].decode("latin-1")))
        given = form.get("token", "")
        if problem or len(body) > MAX_SIGNIN_BODY or not _eq(given, self.auth.token):
            await self._unauthorized(send, False, failed=True, next_path=form.get("next", ""),
                                     base=base)
            return
        # Back to the page the form was on; one leading slash only ("//host" would leave).
        target = form.get("next", "")
        if not target.startswith("/") or target.startswith("//") or "\\" in target:
            target = "/"
        location = base + target if not target.startswith(base + "/") else target
        await self._send(send, 303, b"", "text/plain", [
            ("location", location),
            ("set-cookie", f"{AUTH_COOKIE}={self.auth.cookie_value()}; Path={cookie_path}; "
                           f"HttpOnly; SameSite=Strict{secure}"),
        ])

    async def _unauthorized(self, send: Send, api: bool, *, failed: bool = False,
                            next_path: str = "", base: str = "") -> None:
        auth = self.auth
        assert auth is not None
        headers: list[tuple[str, str]] = []
        if auth.username is not None:
            headers.append(("www-authenticate", 'Basic realm="minique dashboard", charset="UTF-8"'))
        elif auth.token is not None:
            headers.append(("www-authenticate", 'Bearer realm="minique dashboard"'))
        if api:
            body = json.dumps({"error": {"code": "unauthorized",
                                         "message": "authentication required"}}).encode()
            await self._send(send, 401, body, "application/json", headers)
            return
        hint = ("Enter the dashboard token once; a cookie keeps you signed in." if auth.token is not None
                else "Sign in with your username and password.")
        if failed:
            hint = "That token is not right. " + hint
        form = ("<form method='post' action='" + html.escape(base + SIGNIN_PATH, quote=True) + "'>"
                "<input type='password' name='token' placeholder='token' autocomplete='current-password' "
                "aria-label='dashboard token' autofocus> "
                "<input type='hidden' name='next' id='next' value='" + html.escape(next_path, quote=True) +
                "'><button>Sign in</button></form>"
                # The page to return to, taken from the browser's address bar, not from a log-able URL.
                "<script>var n=document.getElementById('next');if(!n.value)"
                "n.value=location.pathname.slice(" + str(len(base)) + ")+location.search;</script>"
                if auth.token is not None else "")
        body = ("<!doctype html><meta charset='utf-8'><title>Sign in · minique</title>"
                "<body style='font-family:system-ui;max-width:30rem;margin:4rem auto'>"
                f"<h1>minique dashboard</h1><p>Authentication required.</p><p>{hint}</p>{form}"
                "</body>").encode()
        await self._send(send, 401, body, "text/html; charset=utf-8", headers)

    @staticmethod
    async def _send(send: Send, status: int, body: bytes, media: str,
                    headers: list[tuple[str, str]] | None = None) -> None:
        raw: list[Any] = [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode())]
        raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or [])]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
