"""What keeps hostile input, secrets and failing disks in their place: escaping per sink, redaction, file modes,
write errors that name their file."""
