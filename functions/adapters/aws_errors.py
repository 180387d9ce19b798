"""What an AWS SDK error says, read in one place: each caller decides what it means for its job or its request."""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import ClientError


@dataclass(frozen=True)
class SdkError:
    code: str  # "ThrottlingException", "NoSuchKey", ...; "" when the service sent none
    message: str
    status: int  # the HTTP status of the answer; 0 when unknown

    @classmethod
    def of(cls, exc: ClientError) -> SdkError:
        error = exc.response.get("Error", {})
        return cls(
            code=str(error.get("Code", "")),
            message=str(error.get("Message", "")),
            status=int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0),
        )
