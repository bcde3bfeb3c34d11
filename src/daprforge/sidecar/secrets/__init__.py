"""Secret store components and the secrets API."""
