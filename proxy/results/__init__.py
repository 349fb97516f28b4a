"""The results cache (docs/caching.md): raw upstream answers stored after verify, keyed by the
forwarded request, its hub and the upstream's identity; query_range answers in step-aligned
pieces."""
