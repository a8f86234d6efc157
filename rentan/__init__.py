"""rentan: durable enrollment workflows bringing vulnerable village workers into BPJS coverage.

This package holds the runtime around the domain: settings, logging, the Temporal connection,
the embedded stack and the ``rentan`` command line.
"""
