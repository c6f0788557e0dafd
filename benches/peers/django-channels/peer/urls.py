from django.urls import path, re_path

from . import views

urlpatterns = [
    path("publish", views.publish),
    re_path(r"^publish/(?P<rest>.*)$", views.publish),
    path("healthz", views.healthz),
]
