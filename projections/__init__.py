"""The read side: the eight read-model tables and the projectors that build them from the event log."""
