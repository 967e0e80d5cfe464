"""Prefect flows and deployments: thin wrappers that compose the datagen library."""
