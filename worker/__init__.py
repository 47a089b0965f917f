"""The worker: WebSocket client engine and the agent that runs jobs."""
