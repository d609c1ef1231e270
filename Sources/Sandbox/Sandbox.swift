// Sandbox: module overview lives in docs/ARCHITECTURE.md.
