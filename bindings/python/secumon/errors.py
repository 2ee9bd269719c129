"""The errors SecuMon raises, all under :class:`SecuMonError`.

Each also derives from the built-in exception it used to be (``ValueError``,
``PermissionError``, ``ConnectionError``, ``RuntimeError``), so code written against those
keeps working.
"""

from typing import Optional


class SecuMonError(Exception):
    """Base of every error SecuMon raises."""


class InvalidArgument(SecuMonError, ValueError):
    """An argument or check spec SecuMon cannot use; the message says which and why."""


class ParseError(InvalidArgument):
    """A malformed scanner report, with where it went wrong."""

    def __init__(self, message: str, file: str, line: int, column: int) -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.column = column


class Unreachable(SecuMonError, ConnectionError):
    """The server could not be reached."""


class ApiError(SecuMonError):
    """The server refused a request: ``status`` (HTTP) and ``code`` (SecuMon's) say why."""

    def __init__(self, message: str, status: int, code: Optional[str]) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class AuthError(ApiError, PermissionError):
    """The credential was refused (401) or may not do this (403)."""


class RequestError(ApiError, ValueError):
    """The request was wrong (other 4xx): a bad parameter, a missing object, a conflict."""


class ServerError(ApiError, RuntimeError):
    """The server failed (5xx); the request may succeed later."""


__all__ = [
    "ApiError", "AuthError", "InvalidArgument", "ParseError", "RequestError", "SecuMonError", "ServerError",
    "Unreachable",
]
