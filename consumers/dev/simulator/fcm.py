"""Firebase Cloud Messaging HTTP v1 (`/v1/projects/{project}/messages:send`). FCM has no delivery callbacks.

Shapes and codes from https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages (Message),
https://firebase.google.com/docs/cloud-messaging/error-codes and
https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode (google.rpc status + FcmError details).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import web

from channels.providers.push import FcmSettings
from consumers.dev.simulator.behaviour import PAYLOAD, FaultDecision

if TYPE_CHECKING:
    from consumers.dev.simulator.app import Payload, Sim

FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
MESSAGE_FIELDS = frozenset({"name", "data", "notification", "android", "webpush", "apns", "fcm_options",
                            "token", "topic", "condition"})
NOTIFICATION_FIELDS = frozenset({"title", "body", "image"})
MAX_PAYLOAD = 4096


def _error(code: int, status: str, message: str, error_code: str | None = None,
           violations: list[dict[str, str]] | None = None) -> web.Response:
    """A google.rpc error, with FCM's own `errorCode` and/or BadRequest field violations in `details`."""
    details: list[dict[str, Any]] = []
    if error_code:
        details.append({"@type": FCM_ERROR, "errorCode": error_code})
    if violations:
        details.append({"@type": BAD_REQUEST, "fieldViolations": violations})
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return web.json_response({"error": error}, status=code)


def _invalid(message: str, field: str | None = None) -> web.Response:
    violations = [{"field": field, "description": message}] if field else None
    return _error(400, "INVALID_ARGUMENT", message, "INVALID_ARGUMENT", violations)


def fault_response(fault: FaultDecision) -> web.Response:
    if fault.kind == "rate_limit":
        response = _error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Send requests'.",
                          "QUOTA_EXCEEDED")
        response.headers["Retry-After"] = str(fault.retry_after or 1)
        return response
    if fault.kind == "timeout":
        return _error(504, "DEADLINE_EXCEEDED", "The request timed out.")
    return _error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE")


def recipient(kind: str, payload: Payload) -> str | None:
    message = payload.get("message") if isinstance(payload, dict) else None
    token = message.get("token") if isinstance(message, dict) else None
    return token if isinstance(token, str) else None


def _check(message: dict[str, Any]) -> web.Response | None:
    """FCM's validation of a Message object, as far as Herald uses it."""
    for name in message:
        if name not in MESSAGE_FIELDS:
            return _invalid(f"Invalid JSON payload received. Unknown name \"{name}\" at 'message': Cannot find "
                            "field.", f"message.{name}")
    targets = [t for t in ("token", "topic", "condition") if message.get(t)]
    if not targets:
        return _invalid("Recipient of the message is not set.", "message")
    if len(targets) > 1:
        return _invalid("Exactly one of token, topic or condition must be set.", "message")
    token = message.get("token")
    if "token" in targets and (not isinstance(token, str) or token.startswith("invalid") or " " in token):
        return _invalid("The registration token is not a valid FCM registration token")
    notification = message.get("notification", {})
    if not isinstance(notification, dict):
        return _invalid("Invalid value at 'message.notification' (type.googleapis.com/"
                        "google.firebase.fcm.v1.Notification)", "message.notification")
    for name, value in notification.items():
        if name not in NOTIFICATION_FIELDS:
            return _invalid(f"Invalid JSON payload received. Unknown name \"{name}\" at 'message.notification': "
                            "Cannot find field.", f"message.notification.{name}")
        if not isinstance(value, str):
            return _invalid(f"Invalid value at 'message.notification.{name}' (TYPE_STRING)",
                            f"message.notification.{name}")
    data = message.get("data", {})
    if not isinstance(data, dict):
        return _invalid("Invalid value at 'message.data' (type.googleapis.com/google.protobuf.Struct)",
                        "message.data")
    for index, (key, value) in enumerate(data.items()):
        if not isinstance(value, str):
            return _invalid(f"Invalid value at 'message.data[{index}].value' (TYPE_STRING), {value}",
                            f"message.data[{index}].value")
        if key in ("from", "gcm") or key.startswith("google"):
            return _invalid(f"Invalid data payload key: {key}", f"message.data[{index}].key")
    size = sum(len(k) + len(v) for k, v in data.items()) + sum(len(v) for v in notification.values())
    if size > MAX_PAYLOAD:
        return _invalid("Message is too big", "message")
    return None


class FcmSim:
    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.settings = FcmSettings()

    async def send(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        token = self.settings.access_token.get_secret_value()
        if not auth.startswith("Bearer ") or not secrets.compare_digest(auth[7:].encode(), token.encode()):
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 "
                          "access token, login cookie or other valid authentication credential.")
        project = request.match_info["project"]
        if project != self.settings.project_id:
            return _error(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied on resource "
                          f"'//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist).")
        body = request[PAYLOAD]
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict):
            return _invalid("Request contains an invalid argument.", "message")
        if (problem := _check(message)) is not None:
            return problem
        device = message.get("token")
        if isinstance(device, str) and (device.startswith("unregistered")
                                        or self.sim.behaviour.rule_for(device).fail == "permanent"):
            return _error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
        behaviour = self.sim.behaviour
        name = f"projects/{project}/messages/0:{behaviour.rng.randrange(10**15, 10**16)}%{behaviour.hex_id(16)}"
        return web.json_response({"name": name})


def setup(app: web.Application, sim: Sim) -> None:
    fcm = FcmSim(sim)
    app.router.add_post("/fcm/v1/projects/{project}/messages:send", fcm.send, name="fcm.send")
