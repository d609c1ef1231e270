// Migration: module overview lives in docs/ARCHITECTURE.md.
