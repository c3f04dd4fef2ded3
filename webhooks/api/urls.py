from django.urls import path

from webhooks.api import outbound
from webhooks.api.views import AirtmWebhookView

urlpatterns = [
    path("webhooks/airtm", AirtmWebhookView.as_view(), name="webhook-airtm"),
    path(
        "webhooks/endpoints",
        outbound.EndpointListCreateApi.as_view(),
        name="webhook-endpoint-list",
    ),
    path(
        "webhooks/endpoints/<str:endpoint_id>",
        outbound.EndpointDetailApi.as_view(),
        name="webhook-endpoint-detail",
    ),
    path(
        "webhooks/endpoints/<str:endpoint_id>/rotate-secret",
        outbound.EndpointRotateSecretApi.as_view(),
        name="webhook-endpoint-rotate-secret",
    ),
    path(
        "webhooks/endpoints/<str:endpoint_id>/ping",
        outbound.EndpointPingApi.as_view(),
        name="webhook-endpoint-ping",
    ),
    path("webhooks/deliveries", outbound.DeliveryListApi.as_view(), name="webhook-delivery-list"),
    path(
        "webhooks/deliveries/replay",
        outbound.DeliveriesReplayApi.as_view(),
        name="webhook-deliveries-replay",
    ),
    path(
        "webhooks/deliveries/<str:delivery_id>",
        outbound.DeliveryDetailApi.as_view(),
        name="webhook-delivery-detail",
    ),
    path(
        "webhooks/deliveries/<str:delivery_id>/replay",
        outbound.DeliveryReplayApi.as_view(),
        name="webhook-delivery-replay",
    ),
]
