"""ASGI entry point (daphne peer.asgi:application): Django for HTTP, Channels' URLRouter for
WebSockets, as in the Channels docs ("Deploying"). No AuthMiddlewareStack (no sessions) and no
AllowedHostsOriginValidator: the load generator sends no Origin header."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peer.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from .consumers import BroadcastConsumer, EchoConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(
            [
                path("ws", BroadcastConsumer.as_asgi()),
                path("echo", EchoConsumer.as_asgi()),
            ]
        ),
    }
)
