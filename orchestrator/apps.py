import importlib
import importlib.util
from typing import Any

from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


class OrchestratorConfig(AppConfig):
    name = "orchestrator"
    verbose_name = "Platform"

    def ready(self) -> None:
        import orchestrator.streams  # noqa: F401 - connects the SSE wake-up receiver

        post_migrate.connect(_sync_roles, sender=self)

        # Register every app's Celery tasks in every process at start. Celery's lazy
        # autodiscovery left tasks whose module was first imported late (from a request
        # thread, after the app finalized) unregistered, so `task.delay()` raised
        # NotRegistered there.
        for config in apps.get_app_configs():
            module = f"{config.name}.tasks"
            if config.name.partition(".")[0] in _PROJECT_APPS and importlib.util.find_spec(module):
                importlib.import_module(module)


_PROJECT_APPS = frozenset({"orchestrator", "ledger", "providers", "escrow", "webhooks"})


def _sync_roles(using: str = "default", **kwargs: Any) -> None:
    # post_migrate is sent app by app, so the later apps' permissions may not exist yet when
    # this app's signal arrives: create them all first (idempotent), then set the groups.
    from django.contrib.auth.management import create_permissions

    from orchestrator.roles import sync_roles

    for config in apps.get_app_configs():
        create_permissions(config, verbosity=0, using=using)
    sync_roles()
