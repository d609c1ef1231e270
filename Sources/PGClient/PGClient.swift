// PGClient: libpq, made safe. Every libpq call of pgha lives in this module.
//
// Files:
//   PGConnectionConfig.swift          parameters (PQconninfoParse for strings and URIs), redaction
//   PGConnection.swift                the connection: its state, close, health, probe
//   PGConnection+Connect.swift        non-blocking connect (PQconnectStartParams/PQconnectPoll)
//   PGConnection+Query.swift          query (sync and async), the connection lock, sending,
//                                     BlockingIOPool offloading, task cancellation
//   PGConnection+Streaming.swift      forEachRow (single-row mode), copyOut, copyIn (sync and async)
//   PGRow.swift, PGCopyWriter.swift   a streamed row read in place; the COPY IN writer
//   PGConnection+Parameters.swift     PQsendQueryParams with text parameters
//   PGConnection+Errors.swift         libpq/server outcomes to PGError (scrubbed, classified)
//   PGConnection+WAL.swift            SQL helpers: pg_is_in_recovery, WAL positions
//   QueryStateMachine.swift           a statement's lifecycle as a pure value (events in, actions
//     +Types, +Resolution             out); the values it uses; how it decides the outcome
//   StatementRun.swift                its executor: performs the actions against libpq
//   Deadline.swift                    monotonic deadlines, poll() on the socket and wake-up channel
//   LibPQHandles.swift                owners of PGconn and PGcancel
//   PGResult.swift, ResultReader.swift  a PGresult owner with typed accessors; the shared reader
//   PGValue.swift                     query parameters (text format + type OID)
//   PGError.swift                     the error struct, its codes and their classification
//   LSN.swift                         pg_lsn values
//   Redaction.swift                   scrubbing secrets out of libpq/server text
//
// C helpers (poll, monotonic clock, wake-up descriptor, notice silencing) are static-inline
// functions in Sources/CLibPQ/shim.h. Error codes are documented in docs/ERROR_HANDLING.md.
