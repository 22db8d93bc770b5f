"""Fencing over HTTP: receivers that admit requests by their fencing token, and clients
that attach a grant's token to every request."""
