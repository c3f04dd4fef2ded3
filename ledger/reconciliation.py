"""Reconciliation cases: problems finance has to look at, opened by machines, closed by staff.

Who opens them:
- verify_ledger (`ledger_reconcile`): the ledger's own checks (balances, trial balance, hash
  chain), then each check in settings.RECONCILIATION_CHECKS: the ledger against what Airtm and
  Trustless Work told us (providers.services.reconciliation, escrow.services.reconciliation).
  Those live in their apps, which the ledger does not import: the setting names them.
- The janitors: stuck objects (providers.services.janitor, escrow.services.janitor).
- Provider flows that meet a fact they cannot apply (Airtm confirms a payin we had canceled).

A problem is named by its key (`Finding.key`). At most one case per key is open (a partial
unique index), so a problem seen again adds to the open case (`occurrences`, `last_seen_at`)
instead of opening one per run. A case is closed by staff (FIXED or NO_ACTION, with a note), or
CLEARED by the check that opened it once a later run no longer sees the problem.

Every open, assignment and resolution writes an audit row in its transaction. Checks that call
a provider do so before any case is written, never inside a transaction.
"""

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.module_loading import import_string

from ledger.integrity import Finding, VerifyReport, ledger_verify
from ledger.models import ReconciliationCase
from orchestrator.audit import audit_record
from orchestrator.context import Actor, acting_as
from orchestrator.errors import InvalidStateError, ValidationFailedError

logger = logging.getLogger(__name__)

Case = ReconciliationCase
OPEN = Case.Status.OPEN


def _audit(case: Case, action: str, reason: str = "", **after: object) -> None:
    audit_record(
        action=f"reconciliation_case.{action}",
        object_type="reconciliation_case",
        object_id=case.public_id,
        marketplace_id=case.marketplace_id,
        after={"key": case.key, "kind": case.kind, "status": case.status, **after},
        reason=reason,
    )


# --- Opening and clearing (machines) -----------------------------------------------------------


def case_open(*, finding: Finding, source: str) -> Case:
    """Open a case for `finding`, or count it on the case already open for its key.

    Runs in the caller's transaction when one is open (a provider flow that found the problem
    while applying a fact), otherwise in its own.
    """
    now = timezone.now()
    with transaction.atomic():
        case = Case.objects.select_for_update().filter(key=finding.key, status=OPEN).first()
        if case is None:
            try:
                with transaction.atomic():
                    case = Case.objects.create(
                        marketplace_id=finding.marketplace_id,
                        kind=finding.kind,
                        key=finding.key,
                        source=source,
                        object_type=finding.object_type,
                        object_id=finding.object_id,
                        summary=finding.summary[:500],
                        details=finding.details,
                        opened_at=now,
                        last_seen_at=now,
                    )
            except IntegrityError:  # opened concurrently: count it there
                case = Case.objects.select_for_update().get(key=finding.key, status=OPEN)
            else:
                _audit(case, "opened", reason=case.summary, source=source)
                return case
        Case.objects.filter(pk=case.pk).update(
            occurrences=F("occurrences") + 1,
            last_seen_at=now,
            summary=finding.summary[:500],
            details=finding.details,
        )
        case.refresh_from_db()
        return case


def cases_clear(*, keys: Iterable[str], note: str) -> int:
    """Close the open cases of `keys` as CLEARED: whoever opened them no longer sees the problem.

    Returns how many were closed.
    """
    keys = list(keys)
    if not keys:
        return 0
    now = timezone.now()
    with transaction.atomic():
        cases = list(Case.objects.select_for_update().filter(key__in=keys, status=OPEN))
        for case in cases:
            case.status = Case.Status.RESOLVED
            case.resolution = Case.Resolution.CLEARED
            case.resolution_note = note
            case.resolved_at = now
            case.save(update_fields=["status", "resolution", "resolution_note", "resolved_at"])
            _audit(case, "cleared", reason=note, resolution=case.resolution)
    return len(cases)


def open_case_keys(*, kind: str, object_types: Sequence[str] = ()) -> list[str]:
    """The keys of the open cases of `kind` (about one of `object_types`, when given)."""
    cases = Case.objects.filter(status=OPEN, kind=kind)
    if object_types:
        cases = cases.filter(object_type__in=object_types)
    return list(cases.values_list("key", flat=True))


@dataclass
class SyncResult:
    opened: int = 0
    seen_again: int = 0
    cleared: int = 0


def cases_sync(
    *,
    source: str,
    findings: Mapping[str, Sequence[Finding]],
    object_types: Sequence[str] = (),
) -> SyncResult:
    """Record one complete run of a machine's checks: open or count a case per finding, and
    clear the open cases the run covered but no longer found.

    `findings` maps each case kind that was checked in full to what its check found; a kind
    whose check did not run (it failed) must be left out, so its cases stay open. With
    `object_types`, the run covered only cases about those types (a janitor's own objects).
    Audit rows name `source` as the actor.
    """
    result = SyncResult()
    with acting_as(Actor(kind="system", id=source)):
        for kind, found in findings.items():
            for finding in found:
                case = case_open(finding=finding, source=source)
                if case.occurrences == 1:
                    result.opened += 1
                else:
                    result.seen_again += 1
            stale = set(open_case_keys(kind=kind, object_types=object_types)) - {
                finding.key for finding in found
            }
            note = f"{source} no longer finds this problem."
            result.cleared += cases_clear(keys=stale, note=note)
    return result


# --- Staff -------------------------------------------------------------------------------------


def _locked_open(case: Case) -> Case:
    case = Case.objects.select_for_update().get(pk=case.pk)
    if case.status != OPEN:
        raise InvalidStateError(
            f"Case {case.public_id} is {case.status}.",
            current_state=case.status,
            allowed_states=[OPEN],
        )
    return case


@transaction.atomic
def case_assign(*, case: Case, assigned_to: str) -> Case:
    """Give an open case to a staff member (their username).

    Raises:
        InvalidStateError: the case is resolved.
    """
    case = _locked_open(case)
    previous = case.assigned_to
    case.assigned_to = assigned_to[:150]
    case.save(update_fields=["assigned_to"])
    _audit(case, "assigned", assigned_to=case.assigned_to, previously=previous)
    return case


STAFF_RESOLUTIONS = (Case.Resolution.FIXED, Case.Resolution.NO_ACTION)


@transaction.atomic
def case_resolve(*, case: Case, resolution: str, note: str, resolved_by: str) -> Case:
    """Close an open case: FIXED (an adjustment or another action corrected it) or NO_ACTION.

    Raises:
        ValidationFailedError: no note, or a resolution staff cannot choose (CLEARED).
        InvalidStateError: the case is resolved already.
    """
    if resolution not in STAFF_RESOLUTIONS:
        raise ValidationFailedError(
            "Resolve as FIXED or NO_ACTION.", fields={"resolution": [resolution]}
        )
    if not note.strip():
        raise ValidationFailedError("Say what was found and done.", fields={"note": ["Required."]})
    case = _locked_open(case)
    case.status = Case.Status.RESOLVED
    case.resolution = resolution
    case.resolution_note = note.strip()
    case.resolved_by = resolved_by[:150]
    case.resolved_at = timezone.now()
    case.save(
        update_fields=["status", "resolution", "resolution_note", "resolved_by", "resolved_at"]
    )
    _audit(case, "resolved", reason=case.resolution_note, resolution=resolution)
    return case


# --- verify_ledger -----------------------------------------------------------------------------


@dataclass
class ReconcileReport:
    verify: VerifyReport
    provider_findings: list[Finding] = field(default_factory=list)
    failed_checks: dict[str, str] = field(default_factory=dict)
    cases: SyncResult = field(default_factory=SyncResult)

    @property
    def problems(self) -> list[str]:
        return [
            *self.verify.problems,
            *(finding.summary for finding in self.provider_findings),
            *(f"{kind} check failed: {error}" for kind, error in self.failed_checks.items()),
        ]

    @property
    def ok(self) -> bool:
        return not self.problems


def ledger_reconcile(*, seal: bool = True, remote: bool = False) -> ReconcileReport:
    """verify_ledger: the ledger's own checks, then the ledger against each provider's records;
    opens a case per problem found and clears the cases no longer found.

    `remote` lets the provider checks read the providers (Trustless Work's escrow balances);
    without it they compare the ledger with what we last read and stored.
    """
    report = ReconcileReport(verify=ledger_verify(seal=seal))
    findings: dict[str, Sequence[Finding]] = {Case.Kind.LEDGER: report.verify.findings}
    for kind, path in settings.RECONCILIATION_CHECKS.items():
        try:
            found = list(import_string(path)(remote=remote))
        except Exception as exc:  # one failing check must not hide what the others found
            logger.exception("reconciliation check %s failed", path)
            report.failed_checks[kind] = f"{type(exc).__name__}: {exc}"
            continue
        findings[kind] = found
        report.provider_findings.extend(found)
    report.cases = cases_sync(source="verify_ledger", findings=findings)
    return report
