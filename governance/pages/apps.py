from django.apps import AppConfig


class PagesConfig(AppConfig):
    name = "governance.pages"
    label = "pages"
    verbose_name = "Pages"
