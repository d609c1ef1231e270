#ifndef PGHA_CLIBPQ_SHIM_H
#define PGHA_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#include <poll.h>
#endif
