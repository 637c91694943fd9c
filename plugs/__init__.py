"""pyvde's plug programs and their shared VDE client library (filled by later issues)."""
