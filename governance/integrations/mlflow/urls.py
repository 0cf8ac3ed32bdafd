from django.urls import path

from governance.integrations.mlflow import api

urlpatterns = [
    path("webhook", api.webhook, name="mlflow-webhook"),
]
