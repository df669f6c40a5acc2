"""Directory views: VZD search, the recipient picker, favorites and the local address book.

Login is enforced globally (LoginRequiredMiddleware). Directory failures never become error pages: the
selectors turn them into German messages shown in place of the results.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from directory import selectors, services
from directory.clients.vzd import VzdError
from directory.forms import AddressForm, PickerForm, SearchForm
from directory.models import Contact
from directory.query import Criteria
from kimportal.errors import PortalError
from kimportal.http import AuthenticatedHttpRequest


@require_GET
def search(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = SearchForm(request.GET or None)
    outcome = None
    if form.is_bound and form.is_valid():
        outcome = selectors.directory_search(form.criteria())
    context = {
        "form": form,
        "outcome": outcome,
        "favorites": selectors.contact_addresses() if outcome and outcome.entries else set(),
    }
    template = "directory/search.html"
    # A history restore (back button after htmx pushed the URL) needs the whole page.
    if request.htmx and not request.htmx.history_restore_request:
        template += "#results"
    return render(request, template, context)


@require_GET
def picker(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Results for the recipient picker (see templates/directory/partials/_picker.html)."""
    form = PickerForm(request.GET)
    outcome = None
    field = "recipients"
    if form.is_valid():
        field = form.cleaned_data["field"] or field
        if form.cleaned_data["picker_q"].strip():
            outcome = selectors.directory_search(Criteria(q=form.cleaned_data["picker_q"], kim_only=True))
    else:
        # Said, not swallowed: the favorites in place of results would look like the answer to what was typed.
        field = form.cleaned_data.get("field") or field
        outcome = selectors.SearchOutcome(
            error=" ".join(f"{form[name].label}: {e}" for name, errors in form.errors.items() for e in errors)
        )
    context = {
        "form": form,
        "outcome": outcome,
        "field_name": field,
        "favorites": [] if outcome else list(selectors.contact_list(favorites_only=True)[:20]),
    }
    return render(request, "directory/partials/_picker.html#picker-results", context)


@require_GET
def picker_pick(request: AuthenticatedHttpRequest) -> HttpResponse:
    """One chosen recipient as a chip with a hidden input; the address is re-checked against the VZD."""
    form = AddressForm(request.GET)
    if not form.is_valid():
        raise Http404
    address = form.cleaned_data["address"].lower()
    error = ""
    entry = None
    try:
        entry = selectors.directory_entry_for_address(address)
        if entry is None:
            error = _("Diese KIM-Adresse steht nicht im Verzeichnis.")
    except VzdError as exc:
        error = selectors.unavailable_message(exc)
    version = entry.kim_version(address) if entry else ""
    context = {
        "field_name": form.cleaned_data["field"] or "recipients",
        "address": address,
        "entry": entry,
        "version": version,
        "error": error,
    }
    return render(request, "directory/partials/_picker.html#picker-chip", context)


@require_POST
def favorite_toggle(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = AddressForm(request.POST)
    if not form.is_valid():
        raise Http404
    address = form.cleaned_data["address"].lower()
    error = ""
    try:
        if request.POST.get("action") == "remove":
            services.contact_favorite_remove(user=request.user, address=address)
        else:
            services.contact_favorite_add(user=request.user, address=address)
    except PortalError as exc:
        error = exc.message
    context = {"address": address, "is_favorite": address in selectors.contact_addresses(), "error": error}
    if request.htmx:
        return render(request, "directory/partials/_favorite.html", context)
    if error:
        messages.error(request, error)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = "directory:contacts"
    return redirect(target)


@require_GET
def contact_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render(request, "directory/contacts.html", {"contacts": selectors.contact_list()})


@require_POST
def contact_acknowledge(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    try:
        services.contact_acknowledge(user=request.user, contact_id=pk)
    except Contact.DoesNotExist as exc:
        raise Http404 from exc
    return redirect("directory:contacts")
