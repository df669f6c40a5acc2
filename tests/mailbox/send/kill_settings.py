"""Settings of the worker processes the kill tests start: the portal's, with a short delivery lease, so the
test does not wait minutes for a dead worker's lease to run out."""

from kimportal.settings import *  # noqa: F403

KIMPORTAL_SEND_LEASE_SECONDS = 2.0
