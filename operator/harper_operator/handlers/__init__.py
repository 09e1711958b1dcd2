"""Kopf wiring. Importing this package registers every handler."""

from . import cluster, node, startup  # noqa: F401
