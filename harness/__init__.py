"""The shared harness of the tests and the benchmarks: the real service, PostgreSQL, coturn,
Chromium and aiortc clients to drive it, speech to say, and local stand-ins for paid APIs."""
