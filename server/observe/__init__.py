"""What the server tells about itself: Prometheus metrics, defined in one place."""
