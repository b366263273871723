"""Errors of the data plane, each with the gRPC status (and HTTP status) it maps to.

Each transport turns these into a status in one place: gRPC in
edgeinfer/serving.py (`ErrorMapping`, applied where the function's and the
gateway's servicers are registered), aiohttp in gateway/rest.py (the
`json_errors` middleware of the REST and admin fronts). The message is meant
for a person: it names the model or tensor and what was expected.
"""

from __future__ import annotations

import grpc


class InferenceError(Exception):
    """Base error: an internal failure unless a subclass says otherwise."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(InferenceError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class ModelNotFound(InferenceError):
    code = grpc.StatusCode.NOT_FOUND
    http_status = 404


class ResourceExhausted(InferenceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429


class Unavailable(InferenceError):
    code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class DeadlineExceeded(InferenceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504


class FailedPrecondition(InferenceError):
    """The request is valid but this server is not in a state (or mode) to do it; the message says what is."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 400


class Unimplemented(InferenceError):
    """An RPC or route this server does not serve; the message names what to use instead."""

    code = grpc.StatusCode.UNIMPLEMENTED
    http_status = 501


class AlreadyExists(InferenceError):
    """A name that is already taken (a shared-memory region registered twice)."""

    code = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409


class Internal(InferenceError):
    """A failure of the server itself (or one injected by a drill's faults.yaml); the message says which."""

    code = grpc.StatusCode.INTERNAL
    http_status = 500
