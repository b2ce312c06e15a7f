"""Bearer JWT authentication: the token's `sub` is the account; `role: operator` reads any account."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt

from oddsflow.api.settings import ApiConfigError, ApiSettings
from oddsflow.streams.normalise import FeedError, ident


class Role(StrEnum):
    CUSTOMER = "customer"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    account_id: str
    role: Role

    def may_read(self, account_id: str) -> bool:
        return self.role is Role.OPERATOR or account_id == self.account_id


class AuthError(Exception):
    """401: the request carries no valid token; ``str(exc)`` says why (never the token)."""


class Verifier:
    def __init__(self, s: ApiSettings) -> None:
        self.s = s
        self.algorithms = s.algorithms()
        self._hs = s.hs_secret()
        self._public: str | None = (
            s.jwt_public_key_file.read_text() if s.jwt_public_key_file is not None else None
        )

    def _key_for(self, alg: str) -> Any:
        if alg.startswith("HS"):
            return self._hs
        return self._public

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token: {exc}") from None
        alg = str(header.get("alg", ""))
        # Only configured algorithms: "none" and any algorithm-confusion attempt fail here.
        if alg not in self.algorithms:
            raise AuthError(f"token algorithm {alg!r} is not accepted")
        key = self._key_for(alg)
        if key is None:
            raise AuthError(f"no key configured for {alg}")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.s.jwt_audience,
                issuer=self.s.jwt_issuer,
                leeway=self.s.jwt_leeway_s,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise AuthError("token has no subject")
        try:
            # The feed's account id rule: no separators the engine (and the bet id hash) use.
            ident(sub, "token subject")
        except FeedError as exc:
            raise AuthError(exc.reason) from None
        role = Role.OPERATOR if claims.get("role") == Role.OPERATOR.value else Role.CUSTOMER
        return Principal(sub, role)


def bearer(header_value: str | None) -> str:
    if not header_value:
        raise AuthError("missing bearer token")
    scheme, _, token = header_value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("expected 'Authorization: Bearer <token>'")
    return token.strip()


def mint_token(
    s: ApiSettings, account_id: str, *, role: Role = Role.CUSTOMER, ttl_s: int | None = None
) -> str:
    """An HS256 token for local use (``oddsflow api token``)."""
    secret = s.hs_secret()
    if secret is None:
        raise ApiConfigError(
            "no HS256 secret: set ODDSFLOW_API_JWT_SECRET (or ODDSFLOW_ENV=dev for the dev secret)"
        )
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": account_id,
        "iss": s.jwt_issuer,
        "aud": s.jwt_audience,
        "iat": now,
        "exp": now + (ttl_s if ttl_s is not None else s.token_ttl_s),
    }
    if role is Role.OPERATOR:
        claims["role"] = role.value
    return jwt.encode(claims, secret, algorithm="HS256")
