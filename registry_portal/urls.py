from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("token/", include("connected.tokenservice.urls")),
    path("", include("connected.api.urls")),
    path("", include("connected.urls")),
]
