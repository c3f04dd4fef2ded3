"""Offline simulators of the providers, served over HTTP (../shared/reference/providers.md §4).

- providers.sandbox.airtm: AirtmSimulator, the Airtm Enterprise API v2 with its hosted
  checkout, Svix-signed webhooks, a test clock, fault injection and a control API.
- providers.sandbox.server: build_app() mounts simulators under prefixes ("/airtm", and
  later "/trustless-work"); SandboxServer serves them on 127.0.0.1.
- Shared parts for every simulator: clock (SimClock), faults (API faults, rate limiter),
  svix (webhook signing and delivery), wire (JSON with exact Decimal numbers).

`manage.py run_sandbox` serves them for the embedded default; tests start a SandboxServer
on a free port. None of this is used when PROVIDERS_MODE=live.
"""
