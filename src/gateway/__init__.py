"""Gateway: the Litestar HTTP/WebSocket/SSE service, the dashboard and the CLI."""
