"""Authentication and authorisation: passwords, tokens, actors, throttling, ownership."""
