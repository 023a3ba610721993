"""The Breezeway API: the client, its token cache and its per-credential pacing."""
