"""REST API under /api/v1: thin FastAPI routers over services; errors as RFC 9457 problem+json."""
