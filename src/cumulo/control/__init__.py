"""Reconcilers: the loop machinery and one module per resource."""
