"""Small helpers shared by the plugin (checkpoint I/O, option checks)."""
