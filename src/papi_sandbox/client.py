"""Clients for a running sandbox: signed PAPI requests, and the operator API.

Two halves, both synchronous over one pooled ``httpx.Client`` each:

- :class:`PapiClient` signs requests the way Binance's clients do (Binance, "Request Security" /
  "SIGNED Endpoint Examples"): the parameters, then ``recvWindow`` (optional) and ``timestamp``
  (ms), are form-encoded into the query string, the body, or both; ``signature`` is computed over
  ``totalParams`` (the query string immediately followed by the body, no separator) and appended
  last. HMAC keys sign with HMAC-SHA256 (lower-case hex); RSA keys with RSASSA-PKCS1-v1_5 over
  SHA-256 and Ed25519 keys with Ed25519, both base64-encoded and then percent-encoded in the
  request. The key travels in the ``X-MBX-APIKEY`` header.
- :class:`AdminClient` speaks the operator API under ``/admin/v1`` (bearer token): accounts, API
  keys, balance adjustments, settings, jobs run as of a time, the journal, ``verify``, and the
  markets (prices, funding rates, commission). Its methods return the decoded JSON (shapes in
  ``docs/operations.md``) and raise :class:`AdminError` on any refusal.

Money is passed as :class:`~decimal.Decimal`, ``int`` or decimal text and sent as text; a
``float`` is refused (:class:`TypeError`) so that no binary rounding reaches the ledger.

Example (a sandbox on the default port, its token in ``~/.papi-sandbox``)::

    admin = AdminClient("http://127.0.0.1:8765", token)
    account = admin.create_account("bot")
    admin.adjust(account.account_id, "UM", "USDT", "-12.5", "REALIZED_PNL")
    admin.adjust(account.account_id, "MARGIN", "USDT", "100")
    papi = PapiClient("http://127.0.0.1:8765", account)
    papi.call("POST", "/papi/v1/repay-futures-negative-balance")  # {"msg": "success"}
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal, Protocol, Self
from urllib.parse import quote, urlencode

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

#: Seconds a request may take before httpx gives up (connect, read, write and pool each).
DEFAULT_TIMEOUT_S = 30.0
#: The operator API's prefix.
ADMIN_PREFIX = "/admin/v1"
#: The header that carries the API key (Binance's name).
API_KEY_HEADER = "X-MBX-APIKEY"
#: Where :meth:`PapiClient.request` puts the parameters: all in the query string, all in the body,
#: or the first one in the query and the rest in the body (totalParams then spans both).
Placement = Literal["query", "body", "split"]
#: Key types, as Binance names them.
KeyType = Literal["HMAC", "RSA", "ED25519"]
#: RSA key size :meth:`AsymmetricKey.generate` uses (bits); Binance accepts 2048 and 4096.
RSA_BITS = 2048

Amount = Decimal | int | str
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def now_ms() -> int:
    """Milliseconds since the epoch, as ``timestamp`` wants them."""
    return time.time_ns() // 1_000_000


def hmac_signature(secret: str, payload: str) -> str:
    """HMAC-SHA256 of ``payload`` keyed by ``secret``, lower-case hex (64 characters)."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def asymmetric_signature(private_key: PrivateKey, payload: str) -> str:
    """Base64 of the RSA (PKCS#1 v1.5, SHA-256) or Ed25519 signature of ``payload``; not yet
    percent-encoded (:func:`signed_query` does that)."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        raw = private_key.sign(payload.encode(), padding.PKCS1v15(), hashes.SHA256())
    else:
        raw = private_key.sign(payload.encode())
    return base64.b64encode(raw).decode()


class Credentials(Protocol):
    """An API key and the means to sign with it."""

    @property
    def api_key(self) -> str: ...

    def sign(self, payload: str) -> str:
        """The signature of ``payload`` (totalParams), before percent-encoding."""
        ...


@dataclass(frozen=True)
class Account:
    """An account as :meth:`AdminClient.create_account` returns it: its id and its first API key,
    an HMAC key whose ``secret`` is shown once by the server (kept here, never logged)."""

    account_id: int
    api_key: str
    secret: str = field(repr=False)

    def sign(self, payload: str) -> str:
        """HMAC-SHA256 hex of ``payload``."""
        return hmac_signature(self.secret, payload)


@dataclass(frozen=True)
class AsymmetricKey:
    """An RSA or Ed25519 API key: the server holds the public half, this object the private."""

    api_key: str
    private_key: PrivateKey = field(repr=False)

    @property
    def key_type(self) -> KeyType:
        return "RSA" if isinstance(self.private_key, rsa.RSAPrivateKey) else "ED25519"

    @staticmethod
    def generate_private_key(key_type: Literal["RSA", "ED25519"]) -> PrivateKey:
        """A new private key: RSA of :data:`RSA_BITS` bits, or Ed25519."""
        if key_type == "RSA":
            return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        return ed25519.Ed25519PrivateKey.generate()

    @staticmethod
    def public_pem(private_key: PrivateKey) -> str:
        """The public half as PEM (SubjectPublicKeyInfo), as the operator API registers it."""
        return (
            private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def sign(self, payload: str) -> str:
        """Base64 RSA or Ed25519 signature of ``payload``."""
        return asymmetric_signature(self.private_key, payload)


def signed_params(
    params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None,
    *,
    timestamp: int | None = None,
    recv_window: int | None = None,
) -> str:
    """``params`` form-encoded in order, then ``recvWindow`` (if given) and ``timestamp`` (now
    unless given): the text a signature covers when it all goes in one place."""
    items = list(params.items() if isinstance(params, Mapping) else (params or ()))
    if recv_window is not None:
        items.append(("recvWindow", recv_window))
    items.append(("timestamp", now_ms() if timestamp is None else timestamp))
    return urlencode(items)


def signature_param(credentials: Credentials, total_params: str) -> str:
    """``signature=...`` for ``total_params``, percent-encoded (base64 has ``+``, ``/``, ``=``)."""
    return "signature=" + quote(credentials.sign(total_params), safe="")


def signed_query(
    credentials: Credentials,
    params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
    *,
    timestamp: int | None = None,
    recv_window: int | None = None,
) -> str:
    """A whole signed query string: ``a=1&...&timestamp=...&signature=...``."""
    text = signed_params(params, timestamp=timestamp, recv_window=recv_window)
    return f"{text}&{signature_param(credentials, text)}"


def raw_request(
    base_url: str,
    method: str,
    path: str,
    query: str = "",
    body: str | bytes = "",
    headers: Mapping[str, str] | None = None,
    client: httpx.Client | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> httpx.Response:
    """Send exactly this query string and body (httpx re-encodes neither). A non-empty body gets
    ``Content-Type: application/x-www-form-urlencoded`` unless ``headers`` names another."""
    all_headers = dict(headers or {})
    content = body.encode() if isinstance(body, str) else body
    if content and not any(name.lower() == "content-type" for name in all_headers):
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    url = httpx.URL(base_url + path)
    if query:
        url = url.copy_with(raw_path=(path + "?" + query).encode())
    send = client.request if client is not None else httpx.request
    return send(method, url, content=content or None, headers=all_headers, timeout=timeout)


class ApiError(Exception):
    """A refusal in Binance's shape: HTTP ``status``, Binance ``code`` and ``msg``. ``code`` is 0
    when the answer was not Binance-shaped JSON (``msg`` then holds the start of the body)."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(f"HTTP {status}, code {code}: {msg}")
        self.status = status
        self.code = code
        self.msg = msg

    @classmethod
    def from_response(cls, response: httpx.Response) -> Self:
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("code"), int):
            return cls(response.status_code, data["code"], str(data.get("msg", "")))
        return cls(response.status_code, 0, response.text[:500])


class AdminError(ApiError):
    """A refusal by the operator API."""


def _decode(response: httpx.Response, error: type[ApiError]) -> Any:
    if response.status_code >= 400:
        raise error.from_response(response)
    return response.json()


class _Http:
    """One pooled httpx client, made on first use (making one costs milliseconds: an SSL
    context) and closed with the object (usable as a context manager)."""

    def __init__(
        self, base_url: str, headers: Mapping[str, str], timeout: float, transport: Any
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._options: dict[str, Any] = {
            "base_url": self.base_url,
            "headers": dict(headers),
            "timeout": timeout,
            "transport": transport,
        }
        self._http: httpx.Client | None = None

    @property
    def http(self) -> httpx.Client:
        """The pooled client."""
        if self._http is None:
            self._http = httpx.Client(**self._options)
        return self._http

    def close(self) -> None:
        """Close the pooled connections."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PapiClient(_Http):
    """Signed and public requests to the PAPI (and the /fapi, /api boot paths) of one sandbox,
    as one API key. ``credentials``: an :class:`Account` (HMAC) or an :class:`AsymmetricKey`."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, {}, timeout, transport)
        self.credentials = credentials

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        *,
        where: Placement = "query",
        timestamp: int | None = None,
        recv_window: int | None = None,
        headers: Mapping[str, str] | None = None,
        client: httpx.Client | None = None,
    ) -> httpx.Response:
        """A SIGNED request; the raw response whatever its status. ``where`` places the
        parameters (see :data:`Placement`); ``client`` sends through another httpx client.
        Raises ValueError for a GET with parameters in its body, which Binance never reads
        (its docs: GET endpoints take a query string only)."""
        if method.upper() == "GET" and where != "query":
            raise ValueError(f"a GET sends its parameters in the query string, not {where!r}")
        encoded = signed_params(params, timestamp=timestamp, recv_window=recv_window)
        if where == "query":
            query, body = encoded, ""
        elif where == "body":
            query, body = "", encoded
        elif where == "split":
            query, _, body = encoded.partition("&")
        else:
            raise ValueError(f"where must be query, body or split, not {where!r}")
        signature = signature_param(self.credentials, query + body)
        if body:
            body += "&" + signature
        else:
            query += "&" + signature
        all_headers = {API_KEY_HEADER: self.credentials.api_key, **(headers or {})}
        return raw_request(
            self.base_url, method, path, query, body, all_headers, client or self.http
        )

    def call(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        **kwargs: Any,
    ) -> Any:
        """:meth:`request`, decoded: the JSON answer, or :class:`ApiError` on a refusal."""
        return _decode(self.request(method, path, params, **kwargs), ApiError)

    def public(
        self, method: str, path: str, params: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        """An unsigned request (NONE security, e.g. ``GET /papi/v1/ping``)."""
        return self.http.request(method, path, params=params)


@dataclass(frozen=True)
class VerifyReport:
    """What ``GET /admin/v1/verify`` proved: ``ok`` when every entry's postings sum to zero per
    asset and every balance equals the sum of its postings (``docs/semantics.md``); counts of
    what it read, and up to 100 ``problems`` in words."""

    ok: bool
    entries: int
    postings: int
    balances: int
    accounts: int
    assets: int
    problems: tuple[str, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VerifyReport:
        return cls(
            ok=bool(data["ok"]),
            entries=int(data.get("entries", 0)),
            postings=int(data.get("postings", 0)),
            balances=int(data.get("balances", 0)),
            accounts=int(data.get("accounts", 0)),
            assets=int(data.get("assets", 0)),
            problems=tuple(str(p) for p in data.get("problems", ())),
        )


def money_text(amount: Amount) -> str:
    """``amount`` as the decimal text the operator API wants; a float raises TypeError."""
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int | str):
        raise TypeError(f"money must be Decimal, int or decimal text, not {type(amount).__name__}")
    return str(amount)


def as_of_text(as_of: datetime | int | str | None) -> str | int | None:
    """``asOf`` for the job endpoints: ISO-8601 text (a naive datetime is taken as UTC), ms since
    the epoch, or None for now."""
    if isinstance(as_of, datetime):
        moment = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return as_of


class AdminClient(_Http):
    """The operator API of one sandbox (``/admin/v1``, ``Authorization: Bearer <token>``).

    ``base_url`` is the service's root (``http://127.0.0.1:8765``); ``token`` the operator token
    (``PAPI_SANDBOX_ADMIN_TOKEN`` or the data folder's ``admin-token`` file). Every method raises
    :class:`AdminError` when the service refuses (e.g. 404 ``-1000`` for an unknown account, 400
    ``-1102`` for a bad field, 400 ``-2018`` for an adjustment past the balance) and
    ``httpx.HTTPError`` when it cannot be reached.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, {"Authorization": f"Bearer {token}"}, timeout, transport)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A raw operator request to ``/admin/v1`` + ``path``; keyword arguments go to httpx
        (``json=``, ``params=``, ``headers=`` which may replace the Authorization header)."""
        return self.http.request(method, ADMIN_PREFIX + path, **kwargs)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`request`, decoded: the JSON answer, or :class:`AdminError`."""
        return _decode(self.request(method, path, **kwargs), AdminError)

    # -- accounts and keys ----------------------------------------------------------------------

    def create_account(self, label: str | None = None) -> Account:
        """A new account with one HMAC key (``POST /accounts``); its secret is in the result."""
        data = self.call("POST", "/accounts", json={"label": label} if label else {})
        return Account(int(data["accountId"]), data["apiKey"], data["secretKey"])

    def create_api_key(
        self,
        account_id: int,
        key_type: KeyType = "HMAC",
        *,
        public_key: str | None = None,
        enable_reading: bool = True,
        enable_portfolio_margin_trading: bool = True,
        ip_whitelist: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Another key for the account (``POST /accounts/{id}/api-keys``): RSA and Ed25519 keys
        need ``public_key`` (PEM). Returns ``{"accountId","apiKey","type"}`` plus ``secretKey``
        for HMAC keys (shown this once)."""
        body: dict[str, Any] = {
            "type": key_type,
            "enableReading": enable_reading,
            "enablePortfolioMarginTrading": enable_portfolio_margin_trading,
            "ipWhitelist": list(ip_whitelist),
        }
        if public_key is not None:
            body["publicKey"] = public_key
        result: dict[str, Any] = self.call("POST", f"/accounts/{account_id}/api-keys", json=body)
        return result

    def create_asymmetric_key(
        self, account_id: int, key_type: Literal["RSA", "ED25519"] = "ED25519", **flags: Any
    ) -> AsymmetricKey:
        """Generate a key pair here, register its public half, return the signing half.
        ``flags``: the keyword options of :meth:`create_api_key`."""
        private_key = AsymmetricKey.generate_private_key(key_type)
        data = self.create_api_key(
            account_id, key_type, public_key=AsymmetricKey.public_pem(private_key), **flags
        )
        return AsymmetricKey(data["apiKey"], private_key)

    def api_keys(self, account_id: int) -> list[dict[str, Any]]:
        """The account's keys, revoked ones included (never a secret)."""
        result: list[dict[str, Any]] = self.call("GET", f"/accounts/{account_id}/api-keys")
        return result

    def revoke_api_key(self, account_id: int, api_key: str) -> None:
        """Revoke a key; refused from then on by every process."""
        self.call("DELETE", f"/accounts/{account_id}/api-keys/{api_key}")

    # -- money ----------------------------------------------------------------------------------

    def adjust(
        self, account_id: int, wallet: str, asset: str, amount: Amount, reason: str = "DEPOSIT"
    ) -> dict[str, Any]:
        """Change one balance the way trading would: one journal entry against the sandbox's
        counterparty (``POST /accounts/{id}/adjustments``). ``wallet``: MARGIN, UM or CM;
        ``amount`` signed; ``reason``: DEPOSIT, WITHDRAW, REALIZED_PNL, FUNDING_FEE or
        COMMISSION. Returns ``{"tranId": int, "balance": {...}}`` (the asset's balance after)."""
        body = {"wallet": wallet, "asset": asset, "amount": money_text(amount), "reason": reason}
        result: dict[str, Any] = self.call("POST", f"/accounts/{account_id}/adjustments", json=body)
        return result

    def balances(self, account_id: int) -> list[dict[str, Any]]:
        """Every asset's balance row (crossMarginFree, umWalletBalance, cmWalletBalance, ...)."""
        result: list[dict[str, Any]] = self.call("GET", f"/accounts/{account_id}/balances")
        return result

    def balance(self, account_id: int, asset: str) -> dict[str, Any] | None:
        """One asset's balance row, or None when the account never held it."""
        return next((r for r in self.balances(account_id) if r["asset"] == asset), None)

    def journal(
        self, account_id: int, limit: int = 1000, before_tran_id: int | None = None
    ) -> list[dict[str, Any]]:
        """The account's journal entries, newest first, each with its ``postings``; pages of at
        most 1000, older ones through ``before_tran_id``."""
        params: dict[str, int] = {"limit": limit}
        if before_tran_id is not None:
            params["beforeTranId"] = before_tran_id
        result: list[dict[str, Any]] = self.call(
            "GET", f"/accounts/{account_id}/journal", params=params
        )
        return result

    def verify(self) -> VerifyReport:
        """Prove the whole ledger (``GET /verify``); an inconsistent ledger is a report with
        ``ok`` False, not an exception."""
        response = self.request("GET", "/verify")
        if response.status_code not in (200, 409):
            raise AdminError.from_response(response)
        return VerifyReport.from_json(response.json())

    # -- settings and jobs ----------------------------------------------------------------------

    def settings(self, account_id: int) -> dict[str, Any]:
        """``{"autoRepay": bool, "vipLevel": int}``."""
        result: dict[str, Any] = self.call("GET", f"/accounts/{account_id}/settings")
        return result

    def set_settings(
        self, account_id: int, *, auto_repay: bool | None = None, vip_level: int | None = None
    ) -> dict[str, Any]:
        """Change the settings named (None leaves one as it is); returns them all."""
        body: dict[str, Any] = {}
        if auto_repay is not None:
            body["autoRepay"] = auto_repay
        if vip_level is not None:
            body["vipLevel"] = vip_level
        result: dict[str, Any] = self.call("PUT", f"/accounts/{account_id}/settings", json=body)
        return result

    def run_job(self, job: str, as_of: datetime | int | str | None = None) -> dict[str, Any]:
        """Run a scheduled job now for its latest slot at or before ``as_of`` (default: now),
        as the scheduler would (``POST /jobs/{job}``; ``docs/jobs.md``): ``auto-repay``,
        ``interest``. Idempotent per slot. Returns the job's report."""
        body: dict[str, Any] = {}
        moment = as_of_text(as_of)
        if moment is not None:
            body["asOf"] = moment
        result: dict[str, Any] = self.call("POST", f"/jobs/{job}", json=body)
        return result

    # -- markets (UM futures) -------------------------------------------------------------------

    def markets(self) -> list[dict[str, Any]]:
        """Every symbol's mark and index price and funding rate (``GET /markets``)."""
        result: list[dict[str, Any]] = self.call("GET", "/markets")
        return result

    def set_price(
        self, symbol: str, mark_price: Amount, index_price: Amount | None = None
    ) -> dict[str, Any]:
        """Move a symbol's mark price (and its index price; by default it follows the mark), as
        the market would (``PUT /markets/{symbol}/price``); positions are valued at it from now
        on. Returns the symbol's market object. 404 ``-1121`` for an unknown symbol."""
        body = {"markPrice": money_text(mark_price)}
        if index_price is not None:
            body["indexPrice"] = money_text(index_price)
        result: dict[str, Any] = self.call("PUT", f"/markets/{symbol}/price", json=body)
        return result

    def set_funding_rate(self, symbol: str, rate: Amount) -> dict[str, Any]:
        """The funding rate the next funding slot charges (from -1 to 1, e.g. ``"0.0001"``;
        ``PUT /markets/{symbol}/funding-rate``). Run the slot with ``run_job("funding", as_of)``."""
        body = {"fundingRate": money_text(rate)}
        result: dict[str, Any] = self.call("PUT", f"/markets/{symbol}/funding-rate", json=body)
        return result

    def expire_orders(self, as_of: datetime | int | str | None = None) -> dict[str, Any]:
        """Expire every open GTD order whose goodTillDate is at or before ``as_of`` (default:
        now), as the server does each second (``POST /orders/expire``); a later ``as_of`` makes
        time pass for the orders. Returns ``{"asOf": ms, "expired": n}``."""
        body: dict[str, Any] = {}
        moment = as_of_text(as_of)
        if moment is not None:
            body["asOf"] = moment
        result: dict[str, Any] = self.call("POST", "/orders/expire", json=body)
        return result

    def positions(self, account_id: int) -> dict[str, Any]:
        """The account's UM positions and margin as the sandbox values them now
        (``GET /accounts/{id}/positions``)."""
        result: dict[str, Any] = self.call("GET", f"/accounts/{account_id}/positions")
        return result

    def set_commission(self, account_id: int, maker: Amount, taker: Amount) -> dict[str, Any]:
        """The account's UM commission rates, as fractions (``"0.0002"`` = 0.02 %;
        ``PUT /accounts/{id}/commission``). Returns ``{"accountId","maker","taker"}``."""
        body = {"maker": money_text(maker), "taker": money_text(taker)}
        result: dict[str, Any] = self.call("PUT", f"/accounts/{account_id}/commission", json=body)
        return result
