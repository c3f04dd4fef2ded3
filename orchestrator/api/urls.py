"""Routes of the platform's own endpoints under /api/v1."""

from django.urls import path

from orchestrator.api.health import HealthApi, ReadinessApi
from orchestrator.api.users import UserDetailApi, UserListCreateApi

urlpatterns = [
    path("health", HealthApi.as_view(), name="health"),
    path("health/ready", ReadinessApi.as_view(), name="health-ready"),
    path("users", UserListCreateApi.as_view(), name="user-list"),
    path("users/<str:user_id>", UserDetailApi.as_view(), name="user-detail"),
]
