"""What people read: galleries, contact sheets, tables, the score and dedup commands' output."""
