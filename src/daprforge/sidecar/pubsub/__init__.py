"""Pub/sub components, publishing, subscriptions and delivery to the app."""
