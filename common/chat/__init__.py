"""The chat engine: sessions, messages, and generations that outlive the HTTP request."""
