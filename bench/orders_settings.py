"""Settings of bench/orders.py's server: the orchestrator's, with the benchmark's URLs."""

from orchestrator.settings import *  # noqa: F403

ROOT_URLCONF = "bench.orders_urls"
