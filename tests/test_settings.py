"""Settings for the test suite: the project's settings plus test-only apps."""

from governance.settings import *  # noqa: F403
from governance.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.govtestapp"]
