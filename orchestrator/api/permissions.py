"""Scope checks: every view declares the one scope it needs; none declared lets nobody in."""

from rest_framework import exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from orchestrator.models import ApiKey


class InsufficientScope(exceptions.PermissionDenied):
    error_code = "INSUFFICIENT_SCOPE"


class HasRequiredScope(BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        method = (request.method or "").lower()
        if method not in view.http_method_names or not hasattr(view, method):
            raise exceptions.MethodNotAllowed(request.method or "")
        scope_for = getattr(view, "scope_for", None)
        scope = scope_for(request.method) if scope_for else getattr(view, "required_scope", None)
        if scope is None:
            return False
        if not isinstance(request.auth, ApiKey) or not request.auth.grants(scope):
            raise InsufficientScope(f"This API key lacks the '{scope}' scope.")
        return True
