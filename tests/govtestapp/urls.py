from django.urls import path

from governance.urls import urlpatterns as project_urlpatterns
from tests.govtestapp.views import WidgetCreateView

urlpatterns = [*project_urlpatterns, path("govtest/widgets/", WidgetCreateView.as_view())]
