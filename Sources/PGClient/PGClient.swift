// PGClient: libpq, made safe. Every libpq call of pgha lives in this module.
//
// Files:
//   PGConnectionConfig.swift  parameters (PQconninfoParse for strings and URIs), redaction
//   PGConnection.swift        the connection: non-blocking connect and query loops over poll(),
//                             deadlines, PQcancel, async variants on BlockingIOPool, SQL helpers
//   PGResult.swift            a PGresult owner with typed accessors
//   PGValue.swift             query parameters (text format + type OID)
//   PGError.swift             the error struct, its codes and their classification
//   LSN.swift                 pg_lsn values
//   Redaction.swift           scrubbing secrets out of libpq/server text
//
// C helpers (poll, monotonic clock, wake-up descriptor, notice silencing) are static-inline
// functions in Sources/CLibPQ/shim.h. Error codes are documented in docs/ERROR_HANDLING.md.
