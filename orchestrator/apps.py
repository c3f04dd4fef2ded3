import importlib
import importlib.util

from django.apps import AppConfig, apps


class OrchestratorConfig(AppConfig):
    name = "orchestrator"
    verbose_name = "Platform"

    def ready(self) -> None:
        import orchestrator.streams  # noqa: F401 - connects the SSE wake-up receiver

        # Register every app's Celery tasks in every process at start. Celery's lazy
        # autodiscovery left tasks whose module was first imported late (from a request
        # thread, after the app finalized) unregistered, so `task.delay()` raised
        # NotRegistered there.
        for config in apps.get_app_configs():
            module = f"{config.name}.tasks"
            if config.name.partition(".")[0] in _PROJECT_APPS and importlib.util.find_spec(module):
                importlib.import_module(module)


_PROJECT_APPS = frozenset({"orchestrator", "ledger", "providers", "escrow", "webhooks"})
