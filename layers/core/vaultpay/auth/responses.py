"""The response models of the auth API that several handlers share."""

from typing import Literal

from pydantic import Field

from vaultpay.shared.openapi import ResponseModel


class TokenPair(ResponseModel):
    """The answer of MFA verify and refresh (`vaultpay.auth.service.TokenPair.body`, docs/api.md)."""

    access_token: str = Field(description="A JWT for `Authorization: Bearer`, bound to this device.")
    refresh_token: str = Field(description="Single use: a refresh retires it and answers a new one.")
    token_type: Literal["Bearer"]
    expires_in: int = Field(ge=1, description="Seconds the access token is valid.")
    refresh_expires_in: int = Field(ge=1, description="Seconds the refresh token is valid.")
