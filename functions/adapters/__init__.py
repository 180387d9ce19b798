"""Adapters: the service's clients of the world outside its own tables and queues (outbound HTTP, AI providers).

The use cases (``functions.logic``) call them; they import only ``functions.models`` and ``functions.settings``.
"""
