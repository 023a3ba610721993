"""The SQL migrations (numbered files, applied in order by ``breezeway_daemon.db.schema``)."""
