"""Declarative reconciler for Microsoft 365 Audio Conferencing user emails."""

__version__ = "0.1.0"
