"""URL configuration: the versioned API, its schema and docs, the admin, and the metrics."""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import (
    SpectacularJSONAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from orchestrator.metrics import metrics_view

handler404 = "orchestrator.api.errors.handler404"
handler500 = "orchestrator.api.errors.handler500"

api_v1: list[URLPattern | URLResolver] = [
    path("", include("orchestrator.api.urls")),
    path("", include("ledger.api.urls")),
    path("", include("providers.api.urls")),
    path("", include("escrow.api.urls")),
    path("", include("webhooks.api.urls")),
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    path("docs", SpectacularSwaggerView.as_view(url_name="openapi"), name="docs"),
    path("redoc", SpectacularRedocView.as_view(url_name="openapi"), name="redoc"),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),
]
