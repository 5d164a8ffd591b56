"""Several instances on one database: who is alive (instances.py), and how one asks another to
act (relay.py)."""
