"""POST /api/v1/webhooks/airtm: Airtm's (Svix-signed) notifications.

Public (the signature is the authentication), CSRF-exempt, and fast: verify on the raw
bytes, store, answer 200; processing runs in Celery. A redelivery is answered 200 with
`duplicate: true` so Svix stops retrying; a bad signature is 401 and the message is not
stored (only a record of the refusal, for the back-office).
"""

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from orchestrator.api.errors import json_error
from orchestrator.metrics import INBOUND_WEBHOOK_REJECTIONS
from webhooks.inbound import AIRTM, airtm_webhook_receive, inbound_rejection_record
from webhooks.svix import WebhookSignatureError


@method_decorator(csrf_exempt, name="dispatch")
class AirtmWebhookView(View):
    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> JsonResponse:
        headers = {key.lower(): value for key, value in request.headers.items()}
        try:
            row, created = airtm_webhook_receive(headers=headers, body=request.body)
        except WebhookSignatureError as exc:
            INBOUND_WEBHOOK_REJECTIONS.labels(AIRTM, exc.code).inc()
            inbound_rejection_record(
                provider=AIRTM,
                headers=headers,
                body=request.body,
                error=exc,
                ip=request.META.get("REMOTE_ADDR", ""),
            )
            return json_error(
                exc.http_status, exc.code, exc.message, provider="airtm", **exc.details
            )
        body: dict[str, Any] = {"status": "ok", "id": row.message_id}
        if not created:
            body["duplicate"] = True
        return JsonResponse(body)
