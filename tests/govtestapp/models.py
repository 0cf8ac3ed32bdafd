"""Test-only governed models (installed only by tests/test_settings.py)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from audit.capture.models import GovernedModel


class Tag(models.Model):
    """Not governed: the other side of a governed many-to-many."""

    name = models.CharField(max_length=50, unique=True)

    def __str__(self) -> str:
        return self.name


class Shelf(models.Model):
    """Not governed: deleting it cascades to governed parts."""

    name = models.CharField(max_length=50)

    def __str__(self) -> str:
        return self.name


class Project(GovernedModel):
    name = models.CharField(max_length=100, unique=True)

    def __str__(self) -> str:
        return self.name


class Widget(GovernedModel):
    """About eight fields of the usual kinds, a cascade parent, an FK to users, a secret and a m2m."""

    governed_exclude = ("view_count",)
    governed_redact = ("secret_hash",)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="widgets", null=True, blank=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    size = models.IntegerField(default=0)
    price = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    ratio = models.FloatField(default=0.0)
    active = models.BooleanField(default=True)
    released_on = models.DateField(null=True, blank=True)
    uid = models.UUIDField(default=uuid.uuid4)
    blob = models.BinaryField(null=True, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                              related_name="+")
    secret_hash = models.CharField(max_length=128, blank=True)
    view_count = models.IntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="widgets")

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.name


class Part(GovernedModel):
    """A governed grandchild: deleting a project cascades through widgets to parts."""

    widget = models.ForeignKey(Widget, on_delete=models.CASCADE, related_name="parts")
    label = models.CharField(max_length=50)
    shelf = models.ForeignKey(Shelf, on_delete=models.CASCADE, null=True, blank=True, related_name="parts")

    def __str__(self) -> str:
        return self.label
