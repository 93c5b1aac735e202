from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

REGISTRY = "registries/<str:registry_name>/connected-registries/"
CR = REGISTRY + "<str:name>/"

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.home, name="home"),
    path("status/", views.status, name="status"),
    path("registries/<str:registry_name>/events/", views.registry_events, name="registry_events"),
    path("registries/<str:registry_name>/events/secret/", views.registry_events_secret,
         name="registry_events_secret"),
    path(REGISTRY, views.connected_registry_list, name="connected_registry_list"),
    # "new" is not a valid connected registry name (5 characters at least), so it cannot clash.
    path(REGISTRY + "new/", views.connected_registry_create, name="connected_registry_create"),
    path(REGISTRY + "new/check/<str:group>/", views.create_check, name="connected_registry_create_check"),
    path(CR, views.connected_registry_detail, name="connected_registry_detail"),
    path(CR + "check/<str:group>/", views.update_check, name="connected_registry_update_check"),
    path(CR + "sync-properties/", views.sync_properties_update, name="connected_registry_properties"),
    path(CR + "repositories/", views.repositories_change, name="connected_registry_repositories"),
    path(CR + "activate/", views.connected_registry_activate, name="connected_registry_activate"),
    path(CR + "deactivate/", views.connected_registry_deactivate, name="connected_registry_deactivate"),
    path(CR + "delete/", views.connected_registry_delete, name="connected_registry_delete"),
    path(CR + "sync/", views.sync_now, name="connected_registry_sync"),
    path(CR + "cancel/", views.sync_cancel, name="connected_registry_cancel"),
    path(CR + "token/status/", views.token_status, name="connected_registry_token_status"),
    path(CR + "token/password/", views.generate_password, name="connected_registry_generate_password"),
    path(CR + "events/", views.connected_registry_events, name="connected_registry_events"),
    path(CR + "events/secret/", views.connected_registry_events_secret, name="connected_registry_events_secret"),
    path(CR + "runs/<int:run_id>/", views.run_detail, name="run_detail"),
]
