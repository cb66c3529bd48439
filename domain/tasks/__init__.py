"""Tasks: work the system hands to a role or a person (see `service`)."""
