from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from django.views.i18n import set_language

from mailbox.events import broadcast_session_ended
from mailbox.urls import manage_urlpatterns
from mailbox.views import signin as signin_views
from operations.views import status as operations_status


class LogoutView(auth_views.LogoutView):
    """Logging out also closes the live sockets this session opened, in every tab, at once."""

    def post(self, request, *args, **kwargs):
        user_id, session_key = request.user.pk, request.session.session_key
        response = super().post(request, *args, **kwargs)
        if user_id and session_key:
            broadcast_session_ended(user_id=user_id, session_key=session_key)
        return response


# A form Django refuses to parse (too many fields or files) gets its own German explanation.
handler400 = "kimportal.errorpages.bad_request"
# An unreachable database (a restart, a failover) raised in a middleware answers 503, not 500 (kimportal.unavailable).
handler500 = "kimportal.errorpages.server_error"

urlpatterns = [
    path("i18n/setlang/", login_not_required(set_language), name="set_language"),
    path("login/", signin_views.PortalLoginView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("sitzung/", signin_views.session_status, name="session-status"),
    # Monitoring: no login (/health/ names components and states only; /metrics wants a token or an allowed address).
    path("health/", operations_status.health, name="health"),
    path("metrics", operations_status.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("leitung/audit/", include("audit.urls")),
    path("directory/", include("directory.urls")),
    path("signatur/", include("signing.urls")),
    path("signatur/verwaltung/kis/", include("signing.api.manage_urls")),
    path("api/kis/v1/", include("signing.api.urls")),
    path("betrieb/", include("operations.urls")),
    path("leitung/", include((manage_urlpatterns, "manage"))),
    path("", include("mailbox.urls")),
]
