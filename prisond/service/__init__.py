"""The daemon: the control sockets, the API they serve, the shims' audit reports."""
