"""Prisons' lifecycles: a prison, the registry of all of them, events, service output.
Host adapters come in through seams (Protocols), so all of this runs against fakes too."""
