"""Shared pieces of the back-office (Django admin) pages: permission checks, date ranges and
CSV downloads. (Admin actions that call services: orchestrator.admin.confirmed_action.)

Pages stay thin: they check the staff member's permission, read through selectors and change
things only through services, inside `acting_as(staff_actor(request))` so the audit log names
the person.
"""

import csv
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone

DEFAULT_RANGE_DAYS = 30


def require_perm(request: HttpRequest, permission: str) -> None:
    """PermissionDenied (403) unless the signed-in staff member holds `permission`."""
    if not request.user.has_perm(permission):
        raise PermissionDenied(f"Needs the {permission} permission.")


# --- Date ranges -------------------------------------------------------------------------------


class DateRangeForm(forms.Form):
    """A range of whole days, both ends included, in UTC."""

    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end and start > end:
            raise forms.ValidationError("The range must not end before it starts.")
        return data

    @classmethod
    def from_query(cls, request: HttpRequest) -> "DateRangeForm":
        """Bound to the query string; the last DEFAULT_RANGE_DAYS days when it names no range."""
        if "start" in request.GET or "end" in request.GET:
            return cls(request.GET)
        today = timezone.now().date()
        start = today - timedelta(days=DEFAULT_RANGE_DAYS - 1)
        return cls({"start": start.isoformat(), "end": today.isoformat()})

    def bounds(self) -> tuple[datetime, datetime]:
        """[start of the first day, start of the day after the last) as aware datetimes."""
        start: date = self.cleaned_data["start"]
        end: date = self.cleaned_data["end"]
        utc = timezone.get_fixed_timezone(0)
        return (
            datetime.combine(start, time.min, tzinfo=utc),
            datetime.combine(end + timedelta(days=1), time.min, tzinfo=utc),
        )


# --- CSV ---------------------------------------------------------------------------------------


class _Echo:
    def write(self, value: str) -> str:
        return value


def _cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: a leading =, +, - or @ would make free text (a
    memo, a reason) a formula, so such text gets a leading apostrophe; numbers are left alone."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        return Decimal(text).is_finite()
    except InvalidOperation:
        return False


def csv_download(
    filename: str, header: Sequence[str], rows: Iterable[Sequence[object]]
) -> StreamingHttpResponse:
    """A CSV attachment written row by row as it is sent (exports can be large)."""
    writer = csv.writer(_Echo())

    def lines() -> Iterable[str]:
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow([_cell(value) for value in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def staff_user(request: HttpRequest) -> User:
    """The signed-in staff member (admin views only run for them)."""
    if not isinstance(request.user, User):
        raise PermissionDenied("Sign in as staff.")
    return request.user
