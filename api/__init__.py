"""The REST API and Socket.io server."""
