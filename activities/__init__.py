"""Activities: every piece of I/O an enrollment workflow needs (database, BPJS)."""
