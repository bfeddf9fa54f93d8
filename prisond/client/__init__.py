"""prisonctl: the CLI, its client of the control socket, and mkroot."""
