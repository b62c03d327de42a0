"""Scripts that make the project's bundled media, pictures and demo weights."""
