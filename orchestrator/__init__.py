"""OFFER-HUB Orchestrator: the Django project and its platform layer."""

from orchestrator.celery import app as celery_app

__all__ = ["celery_app"]
