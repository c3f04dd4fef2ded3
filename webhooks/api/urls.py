from django.urls import path

from webhooks.api.views import AirtmWebhookView

urlpatterns = [
    path("webhooks/airtm", AirtmWebhookView.as_view(), name="webhook-airtm"),
]
