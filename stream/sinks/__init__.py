"""Where the loop's events go: the Sink protocol and the store, log, metrics and webhook sinks."""
