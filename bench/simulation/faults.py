"""The faults a step may bring, and how each is staged (the simulators' own fault APIs).

- airtm_api: a rule on the Airtm simulator for the next 1-2 matching calls: a timeout
  after the call was applied (`timeout_after_success`), a timeout before it, 500, 502,
  503, 429, a dropped connection, a 200 with broken or empty JSON.
- airtm_webhook: a rule on the simulator's Svix dispatcher for the next matching event:
  dropped, delayed, sent twice (same or new svix-id), held back and sent after the next
  one (reordered), badly signed, with a stale timestamp or the wrong secret (refused by
  our endpoint, retried by Svix, never accepted: the janitor must converge).
- tw_api: a rule on the Trustless Work simulator for the next 1-2 matching requests: 429,
  5xx, a timeout before or after the transaction landed, "not complete yet" (lands a few
  requests later).
- indexer_lag: Trustless Work's read model lags the chain by 0 s to an hour, or until
  asked to update from a transaction hash.
- crash: the next pass through a crash point kills the process (bench.simulation.crashes).
- receiver_outage: the marketplaces' webhook endpoint answers 503 to its next requests.
- Worker faults (chosen by the runner when the worker runs): a job lost, a job delivered
  twice, jobs taken out of order, the worker not running at all for a step.
"""

from collections import Counter
from dataclasses import dataclass, field

from bench.simulation.crashes import POINTS
from bench.simulation.world import World

AIRTM_KINDS = (
    "timeout_after_success",
    "timeout_after_success",
    "timeout",
    "500",
    "502",
    "503",
    "429",
    "reset",
    "malformed_json",
    "empty_body",
)
AIRTM_CALLS = (
    ("POST", r"^/v2/payins$"),
    ("POST", r"^/v2/payouts$"),
    ("POST", r"^/v2/payouts/[^/]+/commit$"),
    ("GET", r"^/v2/payins/"),
    ("GET", r"^/v2/payouts/"),
    ("DELETE", r"^/v2/payins/"),
    ("DELETE", r"^/v2/payouts/"),
    ("GET", r"^/v2/users/"),
    (None, r"^/v2/"),
)
WEBHOOK_KINDS = (
    "drop",
    "delay",
    "duplicate",
    "duplicate_new_id",
    "out_of_order",
    "out_of_order",
    "bad_signature",
    "stale_timestamp",
    "wrong_secret",
)
WEBHOOK_EVENTS = ((), ("payin.*",), ("payout.*",))
TW_KINDS = ("rate_limit", "server_error", "timeout", "timeout_after_apply", "not_complete_yet")
TW_PATHS = (
    r"send-transaction",
    r"send-transaction",
    r"get-escrow",
    r"^/escrow/",
    r"^/deployer/",
    r"update-from-txHash",
    None,
)
STALL_SECONDS = 3600.0  # far beyond every client's read timeout
FAULTS = (
    ("airtm_api", 30),
    ("airtm_webhook", 20),
    ("tw_api", 30),
    ("indexer_lag", 5),
    ("crash", 12),
    ("receiver_outage", 5),
)


@dataclass
class FaultInjector:
    world: World
    counts: Counter[str] = field(default_factory=Counter)

    def inject(self) -> str:
        rng = self.world.rng
        kind = rng.choices([k for k, _ in FAULTS], weights=[w for _, w in FAULTS])[0]
        line = getattr(self, f"_{kind}")()
        self.counts[line.split(" ", 2)[0] + " " + line.split(" ", 2)[1]] += 1
        return line

    def _airtm_api(self) -> str:
        rng = self.world.rng
        kind = rng.choice(AIRTM_KINDS)
        method, path = rng.choice(AIRTM_CALLS)
        times = rng.choice([1, 1, 2])
        seconds = STALL_SECONDS if "timeout" in kind else 0.0
        self.world.airtm.add_fault(
            kind=kind, method=method, path=path, times=times, seconds=seconds
        )
        return f"airtm_api {kind} {method or '*'} {path} x{times}"

    def _airtm_webhook(self) -> str:
        rng = self.world.rng
        kind = rng.choice(WEBHOOK_KINDS)
        events = rng.choice(WEBHOOK_EVENTS)
        seconds = float(rng.choice([30, 600, 7200])) if kind == "delay" else 0.0
        self.world.airtm.add_webhook_fault(kind=kind, times=1, event_types=events, seconds=seconds)
        return f"airtm_webhook {kind} {','.join(events) or '*'}"

    def _tw_api(self) -> str:
        rng = self.world.rng
        kind = rng.choice(TW_KINDS)
        path = rng.choice(TW_PATHS)
        if kind == "not_complete_yet":
            path = "send-transaction"
        times = rng.choice([1, 1, 2])
        lands_after = rng.randint(1, 4)
        status = rng.choice([500, 502, 503])
        self.world.tw.add_fault(
            kind,
            path=path,
            times=times,
            status=status,
            hold_seconds=STALL_SECONDS,
            lands_after_requests=lands_after,
        )
        return f"tw_api {kind} {path or '*'} x{times}"

    def _indexer_lag(self) -> str:
        lag = self.world.rng.choice([0.0, 0.0, 15.0, 120.0, 900.0, 3600.0, None])
        self.world.tw.configure(indexer_lag_seconds=lag)
        return f"indexer_lag {'until asked' if lag is None else f'{lag:.0f}s'}"

    def _crash(self) -> str:
        point = self.world.rng.choice(POINTS)
        self.world.crashes.arm(point)
        return f"crash armed {point}"

    def _receiver_outage(self) -> str:
        requests = self.world.rng.randint(1, 12)
        self.world.receiver.outage += requests
        return f"receiver_outage {requests} requests"

    def heal(self) -> None:
        """No more faults: what the drain phase starts with."""
        self.world.airtm.clear_faults()
        self.world.airtm.clear_webhook_faults()
        self.world.airtm.webhooks.release_held()
        self.world.tw.clear_faults()
        self.world.tw.configure(indexer_lag_seconds=0.0)
        self.world.tw.flush_indexer()
        self.world.crashes.disarm()
        self.world.receiver.outage = 0
