"""Settings for the test suite: the project's settings plus test-only apps."""

from governance.settings import *  # noqa: F403
from governance.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.govtestapp"]

# The suite's tests read the outbox right after a commit; the background publisher has its own tests.
OUTBOX_PUBLISH = "inline"
