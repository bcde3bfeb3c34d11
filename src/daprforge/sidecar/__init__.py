"""A local, Dapr-compatible sidecar speaking the Dapr HTTP API v1.0.

It knows Dapr's HTTP contract and component YAML, and nothing of the daprforge runtime:
the only bridge between services and this process is HTTP.
"""
