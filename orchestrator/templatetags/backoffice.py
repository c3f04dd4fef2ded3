"""Template tags of the back-office: `{% dashboard %}` on the admin's front page."""

from typing import Any

from django import template

from orchestrator.dashboard import dashboard_for

register = template.Library()


@register.inclusion_tag("admin/backoffice/dashboard.html", takes_context=True)
def dashboard(context: dict[str, Any]) -> dict[str, Any]:
    return {"board": dashboard_for(user=context["request"].user)}
