"""The host as prisond uses it: cgroups and limits, addresses, processes, the state store,
sd_notify, the lock, callers' identity, and each prison's init (launched, then talked to)."""
