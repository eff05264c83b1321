"""Linux security modules of the Sentry (Linux: security/): Landlock."""
