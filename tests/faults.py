"""Fault injection for boto3 clients: make DynamoDB answer errors on purpose.

Errors are injected at botocore's ``before-send`` event, so they go through the
same parsing and retry machinery as errors from a real server.
"""

from __future__ import annotations

import json
import threading

from botocore.awsrequest import AWSResponse

THROTTLED = (400, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException")
REQUEST_LIMIT = (400, "com.amazonaws.dynamodb.v20120810#RequestLimitExceeded")
INTERNAL = (500, "com.amazonaws.dynamodb.v20120810#InternalServerError")
UNAVAILABLE = (503, "com.amazonaws.dynamodb.v20120810#ServiceUnavailable")


class _RawBody:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_kwargs):
        yield self._data

    def read(self, *_args, **_kwargs) -> bytes:
        data, self._data = self._data, b""
        return data


class FaultInjector:
    """Answer the next ``times`` calls of the named operations with an error.

    ``operations`` are botocore operation names (``"TransactWriteItems"``) or
    ``"*"`` for every call. ``injected`` counts the errors handed out.
    """

    def __init__(self, client, fault=THROTTLED, *, times=1, operations=("*",)):
        self.client = getattr(client, "_client", client)
        self.status, self.error_type = fault
        self.remaining = times
        self.operations = set(operations)
        self.injected = 0
        self._lock = threading.Lock()

    def _events(self):
        if "*" in self.operations:
            return ["before-send.dynamodb"]
        return [f"before-send.dynamodb.{name}" for name in self.operations]

    def _handler(self, request, **_kwargs):
        with self._lock:
            if self.remaining <= 0:
                return None
            self.remaining -= 1
            self.injected += 1
        body = json.dumps({"__type": self.error_type, "message": "injected fault"}).encode()
        return AWSResponse(
            request.url,
            self.status,
            {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "injected"},
            _RawBody(body),
        )

    def __enter__(self):
        for event in self._events():
            self.client.meta.events.register_first(event, self._handler)
        return self

    def __exit__(self, *exc_info):
        for event in self._events():
            self.client.meta.events.unregister(event, self._handler)


class CallRecorder:
    """Record every DynamoDB operation a client makes, with its parameters."""

    def __init__(self, client):
        self.client = getattr(client, "_client", client)
        self.calls = []

    def _record(self, model, params, **_kwargs):
        self.calls.append((model.name, params))

    @property
    def operations(self):
        return [name for name, _ in self.calls]

    def __enter__(self):
        self.client.meta.events.register("before-parameter-build.dynamodb", self._record)
        return self

    def __exit__(self, *exc_info):
        self.client.meta.events.unregister("before-parameter-build.dynamodb", self._record)
