from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

CR = "registries/<str:registry_name>/connected-registries/<str:name>/"

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.home, name="home"),
    path("registries/<str:registry_name>/connected-registries/", views.connected_registry_list,
         name="connected_registry_list"),
    path(CR, views.connected_registry_detail, name="connected_registry_detail"),
    path(CR + "sync/", views.sync_now, name="connected_registry_sync"),
    path(CR + "runs/<int:run_id>/", views.run_detail, name="run_detail"),
]
