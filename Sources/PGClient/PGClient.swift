// PGClient: module overview lives in docs/ARCHITECTURE.md.
