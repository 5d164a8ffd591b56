"""Running on a platform that stops and replaces instances: task protection and draining."""
