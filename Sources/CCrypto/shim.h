#ifndef PGHA_CCRYPTO_SHIM_H
#define PGHA_CCRYPTO_SHIM_H
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/err.h>
#endif
