from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kimportal.settings")

from kimportal.asgihandler import get_pooled_asgi_application

# Django's ASGI handler, its request threads reused (kimportal.asgihandler).
django_asgi_app: Any = get_pooled_asgi_application()

from django.conf import settings  # noqa: E402

if settings.KIMPORTAL_SERVE_STATIC:
    # Demo and browser tests run daphne alone; production puts a reverse proxy in front for /static.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    django_asgi_app = ASGIStaticFilesHandler(django_asgi_app)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from kimportal.routing import unknown_socket, websocket_urlpatterns  # noqa: E402
from kimportal.wsauth import WebsocketAuthMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # The patterns are Django's URLPattern to the stubs (see kimportal/routing.py): fine for Channels.
        "websocket": AllowedHostsOriginValidator(
            WebsocketAuthMiddleware(URLRouter([*websocket_urlpatterns, unknown_socket]))  # type: ignore[list-item]
        ),
    }
)
