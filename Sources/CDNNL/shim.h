// oneDNN 2.x C API from Debian's libdnnl-dev, plus the few things Swift cannot import.
#ifndef SWIFTRESNET_CDNNL_SHIM_H
#define SWIFTRESNET_CDNNL_SHIM_H
#include <oneapi/dnnl/dnnl.h>

// omp.h is not visible to Swift; oneDNN here uses libgomp.
extern void omp_set_num_threads(int);
extern int omp_get_max_threads(void);

// Function-like macro: not importable.
static inline void *cdnnl_memory_allocate(void) { return DNNL_MEMORY_ALLOCATE; }
static inline void *cdnnl_memory_none(void) { return DNNL_MEMORY_NONE; }
#endif
