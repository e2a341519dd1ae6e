"""The `sluice` command: `up` runs the mesh, `ask` sends a request, `trace` shows a trace."""
