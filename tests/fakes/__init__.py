"""Protocol-faithful loopback servers for the backend adapter tests."""
