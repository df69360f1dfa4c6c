"""The `tuneforge` command: a thin shell over tuneforge.api."""
