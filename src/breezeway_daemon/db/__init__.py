"""Everything that talks to PostgreSQL: the pool, migrations, the loader, the run log."""
