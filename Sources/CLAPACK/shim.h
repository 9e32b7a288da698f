#ifndef SWIFTRESNET_CLAPACK_SHIM_H
#define SWIFTRESNET_CLAPACK_SHIM_H
// LAPACK from Debian's liblapack-dev (Fortran calling convention: every argument by pointer).
// Symmetric eigen-decomposition, divide and conquer: what ZCA whitening needs.
void ssyevd_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda, float *w,
             float *work, const int *lwork, int *iwork, const int *liwork, int *info);
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
             double *work, const int *lwork, int *iwork, const int *liwork, int *info);
#endif
