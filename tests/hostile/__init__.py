"""Hostile targets: RFC 6455 violations, floods, silence; bounded memory, time and logs."""
