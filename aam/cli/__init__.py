"""Command-line entry points: one small module per command (parse -> config -> library call)."""
