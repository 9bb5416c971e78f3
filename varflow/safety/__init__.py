"""What keeps hostile input and secrets in their place: escaping per sink, redaction, file modes."""
