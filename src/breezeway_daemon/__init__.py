"""breezeway-daemon: keeps a PostgreSQL copy of Breezeway data for several regions."""

__version__ = "0.1.0"
