"""Directory views: VZD search, the recipient picker, favorites and the local address book.

Login is enforced globally (LoginRequiredMiddleware). Directory failures never become error pages: the
selectors turn them into German messages shown in place of the results.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from directory import selectors, services
from directory.clients.vzd import VzdError
from directory.forms import AddressForm, PickerForm, SearchForm, ShownForm
from directory.models import Contact
from directory.query import Criteria
from kimportal.errors import PortalError
from kimportal.http import AuthenticatedHttpRequest


def _shown(request: AuthenticatedHttpRequest) -> tuple[int, int]:
    """(limit, start) for a list: ``?anzahl=`` hits (whole pages, at most the directory's 100); ``start`` is where
    the page before the last one ended, so a request that only adds hits to the list adds exactly the new ones."""
    page = settings.KIMPORTAL_VZD_PAGE_SIZE
    form = ShownForm(request.GET)
    wanted = (form.cleaned_data["anzahl"] or page) if form.is_valid() else page
    limit = min(-(-wanted // page) * page, selectors.MAX_SHOWN)
    return limit, page * ((limit - 1) // page)


def _more_url(
    request: AuthenticatedHttpRequest, name: str, outcome: selectors.SearchOutcome | None, *, adding: bool = False
) -> str:
    """The same search showing one page more; "" when everything the directory returned is shown. When adding
    hits failed (the directory went away meanwhile), the same request again, to try once more."""
    if outcome is None or (outcome.error and not adding) or (not outcome.error and not outcome.has_more):
        return ""
    params: QueryDict = request.GET.copy()
    if not outcome.error:
        params["anzahl"] = str(outcome.shown + settings.KIMPORTAL_VZD_PAGE_SIZE)
    return f"{reverse(name)}?{params.urlencode()}"


@require_GET
def search(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The search page. "Weitere Treffer anzeigen" is a plain link to the same search with ``anzahl`` raised (the
    whole page, without JavaScript); with htmx it only fetches the new hits and adds them to the list. Like the
    first page it asks the directory again with the same filter; searches are not in the audit trail."""
    form = SearchForm(request.GET or None)
    outcome = None
    # A history restore (back button after htmx pushed the URL) needs the whole page.
    partial = bool(request.htmx) and not request.htmx.history_restore_request
    adding = partial and request.htmx.target == "vzd-more"
    limit, start = _shown(request)
    if form.is_bound and form.is_valid():
        outcome = selectors.directory_search(form.criteria(), limit=limit, start=start if adding else 0)
    context = {
        "form": form,
        "outcome": outcome,
        "favorites": selectors.contact_addresses() if outcome and outcome.entries else set(),
        "more_url": _more_url(request, "directory:search", outcome, adding=adding),
        "first_new": start + 1 if adding and outcome and outcome.error else (outcome.shown + 1 if outcome else 1),
    }
    template = "directory/search.html"
    if adding:
        template += "#more-hits"
    elif partial:
        template += "#results"
    response = render(request, template, context)
    if adding and outcome and outcome.error:
        # Nothing was added: the address stays the one of the list shown (a reload shows the same hits).
        response["HX-Replace-Url"] = "false"
    return response


@require_GET
def picker(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Results for the recipient picker (see templates/directory/partials/_picker.html)."""
    form = PickerForm(request.GET)
    outcome = None
    field = "recipients"
    adding = False
    if form.is_valid():
        field = form.cleaned_data["field"] or field
        # "Weitere Treffer anzeigen" below the list: only the new hits, added to it.
        adding = request.htmx.target == f"{field}-picker-more"
        limit, start = _shown(request)
        if form.cleaned_data["picker_q"].strip():
            outcome = selectors.directory_search(
                Criteria(q=form.cleaned_data["picker_q"], kim_only=True), limit=limit, start=start if adding else 0
            )
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
        "more_url": _more_url(request, "directory:picker", outcome, adding=adding),
    }
    template = "picker-more-hits" if adding and outcome else "picker-results"
    return render(request, f"directory/partials/_picker.html#{template}", context)


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
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("directory:contacts")
    if request.htmx:
        # The swapped form keeps the page it sits on as its way back: a form sent without htmx (script not yet
        # bound to the new form, or switched off) returns there, not to this POST-only address.
        context = {
            "address": address,
            "is_favorite": address in selectors.contact_addresses(),
            "error": error,
            "next": target,
        }
        return render(request, "directory/partials/_favorite.html", context)
    if error:
        messages.error(request, error)
    return redirect(target)


@require_GET
def contact_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render(request, "directory/contacts.html", {"contacts": selectors.contact_list()})


@require_POST
def contact_remove(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    try:
        removed = services.contact_remove(user=request.user, contact_id=pk)
    except Contact.DoesNotExist:
        messages.info(request, _("Dieser Kontakt ist schon entfernt."))
        return redirect("directory:contacts")
    if removed:
        messages.success(request, _("Kontakt entfernt."))
    else:
        messages.error(request, _("Dieser Kontakt steht (wieder) im Verzeichnis und wurde nicht entfernt."))
    return redirect("directory:contacts")


@require_POST
def contact_acknowledge(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    try:
        services.contact_acknowledge(user=request.user, contact_id=pk)
    except Contact.DoesNotExist as exc:
        raise Http404 from exc
    # Back at the row (a long list would start at its top again); keyboard navigation continues from there.
    return redirect(f"{reverse('directory:contacts')}#kontakt-{pk}")
