"""The reference target: echo, events, HTTP API and fault injection."""
