"""daprforge: generate and run FastAPI microservices wired to a Dapr sidecar."""

__version__ = "0.1.0"
