from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from operations.views import kimadmin, status

app_name = "operations"

urlpatterns: list[URLPattern | URLResolver] = [
    # The operations page (IT): components, KIM accounts, cards, certificates (operations.views.status).
    path("", status.status_page, name="status"),
    path("pruefen/", status.status_refresh, name="status-refresh"),
    # KIM administration at the provider's Account Manager (owners of a mailbox and managers).
    path("kim/", kimadmin.kim_list, name="kim-list"),
    path("kim/registrieren/", kimadmin.kim_register_start, name="kim-register-start"),
    path("kim/registrieren/<int:pk>/", kimadmin.kim_register, name="kim-register"),
    path("kim/<int:pk>/", kimadmin.kim_account, name="kim-account"),
    path("kim/<int:pk>/abwesenheit/", kimadmin.kim_out_of_office, name="kim-out-of-office"),
    path("kim/<int:pk>/passwort/", kimadmin.kim_password, name="kim-password"),
    path("kim/<int:pk>/speicherdauer/", kimadmin.kim_data_time_to_live, name="kim-data-time-to-live"),
    path("kim/<int:pk>/version/", kimadmin.kim_version, name="kim-version"),
    path("kim/<int:pk>/abmelden/", kimadmin.kim_deregister, name="kim-deregister"),
    path("kim/<int:pk>/abmeldung-widerrufen/", kimadmin.kim_revoke, name="kim-revoke"),
]
