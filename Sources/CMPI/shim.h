// The few Open MPI 4 (libmpi.so.40) types SwiftResNet calls, declared here instead of
// including <mpi.h>: Debian puts that header under an architecture directory
// (/usr/include/x86_64-linux-gnu/mpi) that is not on the compiler's path, and nothing here is
// linked. ResNetDistributed loads libmpi with dlopen only when the process runs under mpirun
// and resolves these functions and the predefined handles with dlsym, so `resnet` builds and
// starts without Open MPI installed.
//
// Open MPI's handles are pointers to its predefined global objects: MPI_COMM_WORLD is
// `(MPI_Comm) &ompi_mpi_comm_world`, MPI_FLOAT `&ompi_mpi_float`, MPI_SUM `&ompi_mpi_op_sum`,
// MPI_ERRORS_RETURN `&ompi_mpi_errors_return`; MPI_STATUS_IGNORE is a null pointer and
// MPI_SUCCESS is 0 (mpi.h of Open MPI 4.1). This is Open MPI's ABI, not MPICH's.
#ifndef SWIFTRESNET_CMPI_SHIM_H
#define SWIFTRESNET_CMPI_SHIM_H

typedef struct ompi_communicator_t *CMPI_Comm;
typedef struct ompi_datatype_t *CMPI_Datatype;
typedef struct ompi_op_t *CMPI_Op;
typedef struct ompi_request_t *CMPI_Request;
typedef struct ompi_errhandler_t *CMPI_Errhandler;

#define CMPI_SUCCESS 0
#define CMPI_MAX_ERROR_STRING 256

typedef int (*CMPI_Init_fn)(int *argc, char ***argv);
typedef int (*CMPI_Initialized_fn)(int *flag);
typedef int (*CMPI_Finalize_fn)(void);
typedef int (*CMPI_Abort_fn)(CMPI_Comm comm, int code);
typedef int (*CMPI_Comm_rank_fn)(CMPI_Comm comm, int *rank);
typedef int (*CMPI_Comm_size_fn)(CMPI_Comm comm, int *size);
typedef int (*CMPI_Comm_set_errhandler_fn)(CMPI_Comm comm, CMPI_Errhandler handler);
typedef int (*CMPI_Iallreduce_fn)(const void *send, void *receive, int count, CMPI_Datatype type, CMPI_Op op,
                                  CMPI_Comm comm, CMPI_Request *request);
typedef int (*CMPI_Ibcast_fn)(void *buffer, int count, CMPI_Datatype type, int root, CMPI_Comm comm,
                              CMPI_Request *request);
typedef int (*CMPI_Test_fn)(CMPI_Request *request, int *flag, void *status);
typedef int (*CMPI_Error_string_fn)(int code, char *text, int *length);

/// MPI_IN_PLACE in Open MPI: `(void *) 1`.
static inline void *cmpi_in_place(void) { return (void *)1; }

#endif
