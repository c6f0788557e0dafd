"""Django settings of the Django Channels comparison peer: production mode (DEBUG off), no
database, no sessions or auth, warnings-only logging, the Redis channel layer that the Channels
docs recommend for production (channels_redis.core.RedisChannelLayer) on the redis-server that
scripts/peers.sh starts beside daphne (REDIS_URL)."""

import os

DEBUG = False
SECRET_KEY = os.environ.get("SECRET_KEY", "tickcast-peer-not-secret-no-sessions-or-cookies-are-used")
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["daphne", "channels"]
MIDDLEWARE = []
ROOT_URLCONF = "peer.urls"
ASGI_APPLICATION = "peer.asgi.application"
DATABASES = {}
USE_TZ = True

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")]},
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
