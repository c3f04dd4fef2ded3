from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"

    def ready(self) -> None:
        import webhooks.receivers  # noqa: F401 - connects the domain_event receiver
