"""The benchmark's URLs: the orchestrator's plus one minimal view that does a single ledger
transfer (the yardstick bench/orders.py compares order creation with).

Used only by bench/orders.py (DJANGO_SETTINGS_MODULE=bench.orders_settings).
"""

import json
import uuid

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from orchestrator.urls import urlpatterns as orchestrator_urls


@csrf_exempt
def transfer(request: HttpRequest) -> HttpResponse:
    """POST {"source": <account pk>, "destination": <account pk>}: move 0.01 USD."""
    from ledger.models import Account
    from ledger.money import Money
    from ledger.services import transfer_post

    body = json.loads(request.body)
    accounts = Account.objects.in_bulk([body["source"], body["destination"]])
    entry = transfer_post(
        source=accounts[body["source"]],
        destination=accounts[body["destination"]],
        amount=Money.of("0.01", "USD"),
        reference=f"bench:{uuid.uuid4().hex}",
    )
    return JsonResponse({"entry": entry.public_id}, status=201)


urlpatterns = [*orchestrator_urls, path("bench/transfer", transfer)]
