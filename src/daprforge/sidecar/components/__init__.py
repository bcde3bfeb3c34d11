"""Dapr component YAML: loading, validation and the registry of supported types."""
