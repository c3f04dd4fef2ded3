"""Routes of the platform's own endpoints under /api/v1."""

from django.urls import path

from orchestrator.api.auth import ApiKeyListCreateApi, ApiKeyRevokeApi, MeApi
from orchestrator.api.events import EventLogApi, EventStreamApi
from orchestrator.api.health import HealthApi, ReadinessApi
from orchestrator.api.users import UserDetailApi, UserListCreateApi

urlpatterns = [
    path("health", HealthApi.as_view(), name="health"),
    path("health/ready", ReadinessApi.as_view(), name="health-ready"),
    path("auth/me", MeApi.as_view(), name="auth-me"),
    path("auth/api-keys", ApiKeyListCreateApi.as_view(), name="api-key-list"),
    path("auth/api-keys/<str:key_id>/revoke", ApiKeyRevokeApi.as_view(), name="api-key-revoke"),
    path("events", EventStreamApi.as_view(), name="event-stream"),
    path("events/log", EventLogApi.as_view(), name="event-log"),
    path("users", UserListCreateApi.as_view(), name="user-list"),
    path("users/<str:user_id>", UserDetailApi.as_view(), name="user-detail"),
]
