from django.contrib import admin

from tests.govtestapp.models import Widget


@admin.register(Widget)
class WidgetAdmin(admin.ModelAdmin):
    fields = ["name", "description", "size", "price", "ratio", "active", "tags"]
